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
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::{path, SsrMode};

use pages::compare::ComparePage;
use pages::samples::{SampleBrowser, SampleDetail};
use pages::studies::{StudiesPage, StudyPage};
use pages::{jobs::JobsPage, launch::LaunchPage, run::RunPage, runs::RunsPage};

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
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
    view! {
        <Stylesheet id="leptos" href="/pkg/forgetlab.css" />
        <Title formatter=|page: String| if page.is_empty() { "forgetlab".to_owned() } else { format!("{page} · forgetlab") } />
        <Router>
            <header class="topbar">
                <A href="/" attr:class="brand">"forgetlab"</A>
                <nav>
                    <A href="/">"Runs"</A>
                    <A href="/launch">"Launch"</A>
                    <A href="/jobs">"Jobs"</A>
                    <A href="/studies">"Studies"</A>
                    <A href="/compare">"Compare"</A>
                </nav>
            </header>
            <main>
                // Async: every page is sent whole, so it reads without JavaScript.
                <Routes fallback=|| view! { <p class="empty">"No page here."</p> }>
                    <Route path=path!("/") view=RunsPage ssr=SsrMode::Async />
                    <Route path=path!("/launch") view=LaunchPage ssr=SsrMode::Async />
                    <Route path=path!("/jobs") view=JobsPage ssr=SsrMode::Async />
                    <Route path=path!("/runs/:id") view=RunPage ssr=SsrMode::Async />
                    <Route path=path!("/runs/:id/samples") view=SampleBrowser ssr=SsrMode::Async />
                    <Route path=path!("/runs/:id/samples/:key") view=SampleDetail ssr=SsrMode::Async />
                    <Route path=path!("/compare") view=ComparePage ssr=SsrMode::Async />
                    <Route path=path!("/studies") view=StudiesPage ssr=SsrMode::Async />
                    <Route path=path!("/studies/:id") view=StudyPage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
    }
}
