//! forgetlab's user interface: pages, components and the server functions behind them.
//!
//! Built with `ssr` into the server, which renders every page, and with `hydrate` into the
//! browser bundle, which makes the rendered page interactive. Pages read data through server
//! functions ([`functions`]) that call the server's [`backend::Backend`]: the same service the
//! JSON API uses, so a page and a script always see the same numbers.
//!
//! A reader finds a page by its URL in [`pages`].

#[cfg(feature = "ssr")]
pub mod backend;
pub mod components;
pub mod functions;
pub mod pages;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::{SsrMode, path};

use components::{CsrfField, Me};
use pages::account::{AccountPage, LoginPage, SetupPage, UsersPage};
use pages::compare::ComparePage;
use pages::datasets::DatasetsPage;
use pages::samples::{SampleBrowser, SampleDetail};
use pages::studies::{StudiesPage, StudyPage};
use pages::{jobs::JobsPage, launch::LaunchPage, run::RunPage, runs::RunsPage};

/// The Content-Security-Policy of a page: scripts only from this site or inline with this
/// response's nonce (Leptos's hydration and resource scripts carry it), wasm allowed, nothing
/// framed, forms only to this site.
pub fn csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The signed-in account: on the server from the request, in the browser from the page.
fn signed_in() -> Option<protocol::auth::Identity> {
    #[cfg(feature = "ssr")]
    {
        use_context::<protocol::auth::Identity>()
    }
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        let meta = document().query_selector("meta[name='forgetlab-account']").ok().flatten()?;
        serde_json::from_str(&meta.get_attribute("content")?).ok()
    }
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    {
        None
    }
}

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let account = signed_in().and_then(|who| serde_json::to_string(&who).ok());
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                {account.map(|json| view! { <meta name="forgetlab-account" content=json /> })}
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let me = signed_in();
    provide_context(Me(me.clone()));
    let can_launch = me.as_ref().is_some_and(|who| who.role.can_launch());
    let is_admin = me.as_ref().is_some_and(|who| who.is_admin());
    view! {
        <Stylesheet id="leptos" href="/pkg/forgetlab.css" />
        <Title formatter=|page: String| if page.is_empty() { "forgetlab".to_owned() } else { format!("{page} · forgetlab") } />
        <Router>
            <a class="skip-link" href="#content">"Skip to the page"</a>
            <header class="topbar">
                <A href="/" attr:class="brand">"forgetlab"</A>
                {me.map(|who| view! {
                    <nav>
                        <A href="/">"Runs"</A>
                        {can_launch.then(|| view! { <A href="/launch">"Launch"</A> })}
                        <A href="/jobs">"Jobs"</A>
                        <A href="/studies">"Studies"</A>
                        <A href="/compare">"Compare"</A>
                        <A href="/datasets">"Datasets"</A>
                        {is_admin.then(|| view! { <A href="/admin/users">"Users"</A> })}
                    </nav>
                    <div class="account-menu">
                        <a href="/account" class="whoami" data-role=who.role.as_str()>{who.name.clone()} " · " {who.role.as_str()}</a>
                        <form method="post" action="/logout" class="inline-form">
                            <CsrfField />
                            <button type="submit" class="button small">"Sign out"</button>
                        </form>
                    </div>
                })}
            </header>
            <main id="content" tabindex="-1">
                // Async: every page is sent whole, so it reads without JavaScript.
                <Routes fallback=|| view! { <p class="empty">"No page here."</p> }>
                    <Route path=path!("/") view=RunsPage ssr=SsrMode::Async />
                    <Route path=path!("/launch") view=LaunchPage ssr=SsrMode::Async />
                    <Route path=path!("/jobs") view=JobsPage ssr=SsrMode::Async />
                    <Route path=path!("/runs/:id") view=RunPage ssr=SsrMode::Async />
                    <Route path=path!("/runs/:id/samples") view=SampleBrowser ssr=SsrMode::Async />
                    <Route path=path!("/runs/:id/samples/:key") view=SampleDetail ssr=SsrMode::Async />
                    <Route path=path!("/compare") view=ComparePage ssr=SsrMode::Async />
                    <Route path=path!("/datasets") view=DatasetsPage ssr=SsrMode::Async />
                    <Route path=path!("/studies") view=StudiesPage ssr=SsrMode::Async />
                    <Route path=path!("/studies/:id") view=StudyPage ssr=SsrMode::Async />
                    <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async />
                    <Route path=path!("/setup") view=SetupPage ssr=SsrMode::Async />
                    <Route path=path!("/account") view=AccountPage ssr=SsrMode::Async />
                    <Route path=path!("/admin/users") view=UsersPage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
    }
}
