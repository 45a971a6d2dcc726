//! `/login`, `/setup` (the first administrator), `/account` (your API tokens, password and
//! sessions) and `/admin/users` (administrators: accounts and roles).
//!
//! Sign-in and setup are plain forms the server answers with a redirect (they work before
//! any session, and without JavaScript); the rest are server functions with CSRF fields.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use protocol::auth::{MIN_PASSWORD, Role};

use crate::components::form::ActionForm;
use crate::components::{CsrfField, me};
use crate::functions::{
    ChangePassword, CreateAccount, CreateToken, FormOutcome, ResetPassword, RevokeToken, SignOutEverywhere, UpdateAccount, list_accounts, my_tokens,
};

/// What a form's action said: a notice, or the reason in red.
fn said(result: Option<Result<FormOutcome, ServerFnError>>) -> Option<AnyView> {
    Some(match result? {
        Ok(FormOutcome { ok: true, message }) => view! { <p class="notice" role="status">{message}</p> }.into_any(),
        Ok(FormOutcome { message, .. }) => view! { <p class="error" role="alert">{message}</p> }.into_any(),
        Err(error) => view! { <p class="error" role="alert">{super::form_error("nothing was changed", error)}</p> }.into_any(),
    })
}

/// A destructive action behind a second click: `label` opens it, saying what it will do
/// (`children`, with the button that does it). Works without JavaScript.
#[component]
fn Confirm(label: String, children: Children) -> impl IntoView {
    view! {
        <details class="confirm">
            <summary class="button small">{label}</summary>
            <div class="confirm-body">{children()}</div>
        </details>
    }
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let error = move || query.with(|q| q.get("error"));
    let next = move || query.with(|q| q.get("next")).unwrap_or_else(|| "/".into());
    view! {
        <Title text="Sign in" />
        <section class="auth-card">
            <h1>"Sign in"</h1>
            {me().map(|who| view! { <p class="notice">"You are signed in as " <strong>{who.name}</strong> ". " <a href="/">"Go to the runs"</a> "."</p> })}
            <form method="post" action="/login" class="launch-form login-form">
                <input type="hidden" name="next" value=next />
                <label class="field"><span class="field-label">"User name"</span>
                    <input name="name" id="name" autocomplete="username" required autofocus />
                </label>
                <label class="field"><span class="field-label">"Password"</span>
                    <input name="password" id="password" type="password" autocomplete="current-password" required />
                </label>
                <div class="form-actions">
                    <button type="submit" class="button primary">"Sign in"</button>
                    {move || error().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                </div>
            </form>
            <p class="muted">"No account? Ask your lab's forgetlab administrator. Scripts use API tokens (see your account page)."</p>
        </section>
    }
}

#[component]
pub fn SetupPage() -> impl IntoView {
    let query = use_query_map();
    let token = move || query.with(|q| q.get("token")).unwrap_or_default();
    let error = move || query.with(|q| q.get("error"));
    view! {
        <Title text="Set up" />
        <section class="auth-card">
            <h1>"Create the first administrator"</h1>
            <p class="lede">"This link was printed by the server on its first start; it works once, for an hour."</p>
            <form method="post" action="/setup" class="launch-form setup-form">
                <input type="hidden" name="token" value=token />
                <label class="field"><span class="field-label">"User name"</span>
                    <input name="name" autocomplete="username" required />
                    <span class="field-hint">"letters, digits, '.', '_', '@' or '-'"</span>
                </label>
                <label class="field"><span class="field-label">"Password"</span>
                    <input name="password" type="password" autocomplete="new-password" required minlength=MIN_PASSWORD />
                    <span class="field-hint">{format!("at least {MIN_PASSWORD} characters")}</span>
                </label>
                <label class="field"><span class="field-label">"Password again"</span>
                    <input name="confirm" type="password" autocomplete="new-password" required />
                </label>
                <div class="form-actions">
                    <button type="submit" class="button primary">"Create and sign in"</button>
                    {move || error().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                </div>
            </form>
        </section>
    }
}

#[component]
pub fn AccountPage() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let password = ServerAction::<ChangePassword>::new();
    let everywhere = ServerAction::<SignOutEverywhere>::new();
    let tokens = Resource::new(move || (create.version().get(), revoke.version().get()), |_| my_tokens());
    let Some(who) = me() else {
        return view! { <p class="empty">"Sign in to see your account."</p> }.into_any();
    };
    view! {
        <Title text="Account" />
        <h1>"Your account"</h1>
        <p class="lede">{who.name.clone()} " · " <span class="badge" data-role=who.role.as_str()>{who.role.as_str()}</span></p>
        <section class="card">
            <h2>"API tokens"</h2>
            <p class="muted">"For scripts: send " <code>"Authorization: Bearer <token>"</code> ". A token has your role; it is shown once, so copy it now. Without a browser: "
                <code>"curl -u NAME -X POST -H 'Content-Type: application/json' -d '{\"name\":\"laptop\"}' URL/api/v1/tokens"</code> "."</p>
            <ActionForm action=create attr:class="inline-form token-form">
                <CsrfField />
                <label class="field"><span class="field-label">"Token name"</span><input name="name" placeholder="e.g. analysis notebook" required /></label>
                <button type="submit" class="button">"Create token"</button>
            </ActionForm>
            {move || create.value().get().map(|result| match result {
                Ok(Ok(token)) => view! {
                    <div class="notice new-token" role="status">
                        "New token “" {token.name} "” (shown once): " <code class="secret" data-token-id=token.id>{token.token}</code>
                    </div>
                }.into_any(),
                Ok(Err(message)) => view! { <p class="error" role="alert">{message}</p> }.into_any(),
                Err(error) => view! { <p class="error" role="alert">{super::form_error("nothing was changed", error)}</p> }.into_any(),
            })}
            {move || said(revoke.value().get())}
            <Transition fallback=|| view! { <p class="loading">"Loading tokens…"</p> }>
                {move || Suspend::new(async move {
                    match tokens.await {
                        Err(error) => super::load_error("your tokens", error),
                        Ok(list) if list.is_empty() => view! { <p class="empty">"No tokens yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <table class="data tokens">
                                <thead><tr><th>"#"</th><th>"Name"</th><th>"Created"</th><th>"Last used"</th><th></th></tr></thead>
                                <tbody>{list.into_iter().map(|t| view! {
                                    <tr data-token=t.id>
                                        <td>{t.id}</td><td>{t.name.clone()}</td><td class="muted">{t.created_at}</td>
                                        <td class="muted">{t.last_used_at.unwrap_or_else(|| "never".into())}</td>
                                        <td><Confirm label="Revoke…".into()>
                                            <p class="small">{format!("Scripts that use “{}” stop working at once.", t.name)}</p>
                                            <ActionForm action=revoke attr:class="inline-form">
                                                <CsrfField />
                                                <input type="hidden" name="id" value=t.id />
                                                <button type="submit" class="button small danger" aria-label=format!("Revoke token {}", t.name)>"Revoke it"</button>
                                            </ActionForm>
                                        </Confirm></td>
                                    </tr>
                                }).collect_view()}</tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <section class="card">
            <h2>"Password"</h2>
            <ActionForm action=password attr:class="launch-form password-form">
                <CsrfField />
                <label class="field"><span class="field-label">"Current password"</span><input name="old_password" type="password" autocomplete="current-password" required /></label>
                <label class="field"><span class="field-label">"New password"</span><input name="new_password" type="password" autocomplete="new-password" required /></label>
                <label class="field"><span class="field-label">"New password again"</span><input name="confirm" type="password" autocomplete="new-password" required /></label>
                <p class="muted">"Changing it signs out your other browsers."</p>
                <label class="check"><input type="checkbox" name="revoke_tokens" value="on" />" also revoke my API tokens (scripts must get new ones)"</label>
                <div class="form-actions"><button type="submit" class="button">"Change password"</button>{move || said(password.value().get())}</div>
            </ActionForm>
        </section>
        <section class="card">
            <h2>"Sessions"</h2>
            <Confirm label="Sign out everywhere…".into()>
                <p class="small">"Every browser signed in as you, this one included, is signed out; API tokens keep working."</p>
                <ActionForm action=everywhere attr:class="inline-form">
                    <CsrfField />
                    <button type="submit" class="button danger">"Sign out everywhere"</button>
                </ActionForm>
            </Confirm>
            {move || said(everywhere.value().get())}
        </section>
    }
    .into_any()
}

#[component]
pub fn UsersPage() -> impl IntoView {
    let create = ServerAction::<CreateAccount>::new();
    let update = ServerAction::<UpdateAccount>::new();
    let reset = ServerAction::<ResetPassword>::new();
    let accounts = Resource::new(move || (create.version().get(), update.version().get()), |_| list_accounts());
    let myself = StoredValue::new(me().map(|who| who.name).unwrap_or_default());
    let roles = [Role::Member, Role::Viewer, Role::Admin];
    view! {
        <Title text="Users" />
        <h1>"Users"</h1>
        <p class="lede">"Administrators do everything; members launch, and cancel or retry their own runs; viewers browse."</p>
        <section class="card">
            <h2>"New account"</h2>
            <ActionForm action=create attr:class="inline-form new-account">
                <CsrfField />
                <label class="field"><span class="field-label">"User name"</span><input name="name" required /></label>
                <label class="field"><span class="field-label">"Initial password"</span><input name="password" type="password" autocomplete="new-password" required /></label>
                <label class="field"><span class="field-label">"Role"</span>
                    <select name="role">{roles.iter().map(|r| view! { <option value=r.as_str()>{r.as_str()}</option> }).collect_view()}</select>
                </label>
                <button type="submit" class="button primary">"Create"</button>
            </ActionForm>
            {move || said(create.value().get())}
        </section>
        {move || said(update.value().get())}
        {move || said(reset.value().get())}
        <Transition fallback=|| view! { <p class="loading">"Loading accounts…"</p> }>
            {move || Suspend::new(async move {
                match accounts.await {
                    Err(error) => super::load_error("the accounts", error),
                    Ok(list) => view! {
                        <table class="data accounts">
                            <thead><tr><th>"Name"</th><th>"Role"</th><th>"State"</th><th>"Created"</th><th></th></tr></thead>
                            <tbody>{list.into_iter().map(|a| {
                                let name = a.name.clone();
                                let own = myself.with_value(|me| a.name == *me);
                                let (role_label, role_name) = (format!("role of {name}"), name.clone());
                                let role = if own {
                                    view! { <span class="own-account">{a.role.as_str()}" (you; another administrator can change it)"</span> }.into_any()
                                } else {
                                    view! {
                                        <ActionForm action=update attr:class="inline-form">
                                            <CsrfField />
                                            <input type="hidden" name="name" value=role_name />
                                            <input type="hidden" name="disabled" value="" />
                                            <select name="role" aria-label=role_label>{roles.iter().map(|r| view! {
                                                <option value=r.as_str() selected=*r == a.role>{r.as_str()}</option>
                                            }).collect_view()}</select>
                                            <button type="submit" class="button small">"Set role"</button>
                                        </ActionForm>
                                    }.into_any()
                                };
                                let toggle = move |name: String, disabled: bool| view! {
                                    <ActionForm action=update attr:class="inline-form">
                                        <CsrfField />
                                        <input type="hidden" name="name" value=name.clone() />
                                        <input type="hidden" name="role" value="" />
                                        <input type="hidden" name="disabled" value=if disabled { "false" } else { "true" } />
                                        <button type="submit" class=if disabled { "button small" } else { "button small danger" }>
                                            {if disabled { format!("Enable {name}") } else { format!("Disable {name}") }}</button>
                                    </ActionForm>
                                };
                                let disable = if a.disabled {
                                    toggle(name.clone(), true).into_any()
                                } else {
                                    let warning = format!("{name} is signed out everywhere and their API tokens stop working until enabled again.");
                                    let form = toggle(name.clone(), false);
                                    view! {
                                        <Confirm label="Disable…".into()>
                                            <p class="small">{warning}</p>
                                            {form}
                                        </Confirm>
                                    }.into_any()
                                };
                                let (for_reset, label) = (name.clone(), format!("New password for {name}"));
                                let actions = (!own).then(move || view! {
                                    {disable}
                                    <Confirm label="Reset password…".into()>
                                        <ActionForm action=reset attr:class="launch-form reset-form">
                                            <CsrfField />
                                            <input type="hidden" name="name" value=for_reset />
                                            <label class="field"><span class="field-label">{label}</span>
                                                <input name="password" type="password" autocomplete="new-password" required /></label>
                                            <label class="check"><input type="checkbox" name="revoke_tokens" value="on" />" also revoke their API tokens"</label>
                                            <p class="muted small">"Their browser sessions end; tell them the new password yourself."</p>
                                            <button type="submit" class="button small danger">"Set the new password"</button>
                                        </ActionForm>
                                    </Confirm>
                                });
                                view! {
                                    <tr data-account=a.name.clone() data-own=own.to_string()>
                                        <td>{a.name.clone()}</td>
                                        <td>{role}</td>
                                        <td>{if a.disabled { "disabled" } else { "enabled" }}</td>
                                        <td class="muted">{a.created_at.clone()}</td>
                                        <td class="account-actions">{actions}</td>
                                    </tr>
                                }
                            }).collect_view()}</tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}
