//! `/datasets`: the registered datasets, how each splits, and, for a dataset registered with
//! a grouping rule, how many groups (patients) each side holds (issue 22, item 6).

use leptos::prelude::*;
use leptos_meta::Title;
use protocol::DatasetInfo;

use crate::functions::list_datasets;

#[component]
pub fn DatasetsPage() -> impl IntoView {
    let datasets = crate::components::resource::resource(|| (), |_| list_datasets());
    view! {
        <Title text="Datasets" />
        <h1>"Datasets"</h1>
        <p class="hint">
            "Registered with " <code>"POST /api/v1/datasets"</code>
            " (name, format, path under a data root, options). An image folder with several images per patient takes a grouping rule, "
            <code>"options.group_pattern"</code>
            ", a regular expression over each image's path whose first group names the patient; the split then keeps every patient on one side."
        </p>
        <Transition fallback=|| view! { <p class="loading">"Loading datasets…"</p> }>
            {move || Suspend::new(async move {
                match datasets.await {
                    Err(error) => super::load_error("the datasets", error),
                    Ok(list) if list.is_empty() => view! { <p class="empty">"No dataset is registered yet."</p> }.into_any(),
                    Ok(list) => view! { <DatasetsTable list /> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// `a x b` pixels, or "mixed" when the images differ (runs then choose a size).
fn image_size(info: &DatasetInfo) -> String {
    if info.image_height == 0 { "mixed sizes".into() } else { format!("{} × {} × {}", info.image_height, info.image_width, info.channels) }
}

/// How the dataset's split was made, in words.
fn split_rule(info: &DatasetInfo) -> String {
    let options = &info.options;
    let mut rule = match info.format.as_str() {
        "image_folder" => {
            format!("split.csv, train/ and val/ folders, or {:.0} % of each class to Val (seed {})", options.val_fraction * 100.0, options.split_seed)
        }
        "cub" => "CUB's train_test_split.txt".into(),
        _ => "as the files ship".into(),
    };
    if options.bad_images == "skip" {
        rule.push_str("; unreadable images skipped");
    }
    rule
}

#[component]
fn DatasetsTable(list: Vec<DatasetInfo>) -> impl IntoView {
    view! {
        <div class="table-scroll">
            <table class="data datasets-table">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Format"</th>
                        <th scope="col">"Classes"</th>
                        <th scope="col" class="num">"Train"</th>
                        <th scope="col" class="num">"Val"</th>
                        <th scope="col">"Images"</th>
                        <th scope="col">"Split"</th>
                        <th scope="col">"Groups"</th>
                    </tr>
                </thead>
                <tbody>
                    {list.into_iter().map(|info| {
                        let classes = info.class_names.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
                        let more = info.class_names.len().saturating_sub(4);
                        let classes = if more > 0 { format!("{} ({classes}, … {more} more)", info.num_classes) } else { format!("{} ({classes})", info.num_classes) };
                        let groups = match (&info.groups, &info.options.group_pattern) {
                            (Some(groups), pattern) => view! {
                                <span class="groups" data-train=groups.train data-val=groups.val data-test=groups.test>
                                    {format!("{} train / {} val", groups.train, groups.val)}
                                    {(groups.test > 0).then(|| format!(" / {} test", groups.test))}
                                    {pattern.clone().map(|p| view! { " by " <code>{p}</code> })}
                                </span>
                            }.into_any(),
                            (None, _) => view! { <span class="muted">"not grouped"</span> }.into_any(),
                        };
                        view! {
                            <tr data-dataset=info.name.clone()>
                                <th scope="row" title=info.path.clone()>{info.name.clone()}</th>
                                <td>{info.format.clone()}</td>
                                <td>{classes}</td>
                                <td class="num">{info.train_size}</td>
                                <td class="num">{info.val_size}</td>
                                <td>{image_size(&info)}</td>
                                <td>{split_rule(&info)}</td>
                                <td>{groups}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
