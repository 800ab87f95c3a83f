//! The page shell (head, navigation, logout form) and small formatting
//! helpers shared by the console's pages. Everything interpolated through
//! `maud` is HTML-escaped.

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::assets;
use super::session::Session;

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Scans,
    Webhooks,
    DeadLetters,
    Routing,
}

/// A page for a logged-in operator. `live` is the query string of the SSE
/// stream the page listens to (`None`: a static page).
pub fn page(
    title: &str,
    session: &Session,
    nav: Nav,
    live: Option<String>,
    body: Markup,
) -> Markup {
    let item = |target: Nav, href: &str, label: &str| {
        html! {
            a.current[nav == target] href=(href) { (label) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-live-src=[live.map(|query| format!("/ui/live?{query}"))] {
                header.top {
                    span.brand { "ScanFleet" }
                    nav {
                        (item(Nav::Overview, "/ui", "Overview"))
                        (item(Nav::Scans, "/ui/scans", "Scans"))
                        (item(Nav::Webhooks, "/ui/webhooks", "Webhooks"))
                        (item(Nav::DeadLetters, "/ui/dead-letters", "Dead letters"))
                        @if session.is_admin() {
                            (item(Nav::Routing, "/ui/routing", "Routing"))
                        }
                    }
                    span.who {
                        (session.tenant_name)
                        @if session.is_admin() { " (admin)" }
                        " · key " code { (session.key_prefix) "…" }
                    }
                    form.logout method="post" action="/ui/logout" {
                        (csrf_field(session))
                        button type="submit" { "Log out" }
                    }
                    span #live-status title="Live updates" {}
                }
                (body)
            }
        }
    }
}

/// A page without navigation (login, errors).
pub fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { (body) }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · ScanFleet console" }
            link rel="stylesheet" href=(assets::CSS_PATH);
            script src=(assets::JS_PATH) defer {}
        }
    }
}

/// The hidden field every POST form carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name=(super::csrf::FIELD) value=(session.csrf_token()); }
}

/// A timestamp, machine-readable in `datetime` and readable in UTC.
pub fn time(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S UTC")) }
    }
}

pub fn optional_time(at: Option<DateTime<Utc>>) -> Markup {
    match at {
        Some(at) => time(at),
        None => html! { span.muted { "—" } },
    }
}

/// A scan status as a coloured badge.
pub fn status_badge(status: &str) -> Markup {
    html! { span.badge.{ "status-" (status) } data-field="status" { (status) } }
}

/// Milliseconds as a short human duration.
pub fn duration_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        "—".into()
    } else if ms < 1_000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1e3)
    } else {
        format!("{:.1} min", ms / 60e3)
    }
}

/// US dollars with enough digits for per-scan costs (fractions of a cent).
pub fn usd(amount: f64) -> String {
    if amount.abs() >= 1.0 {
        format!("${amount:.2}")
    } else {
        format!("${amount:.6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_money_read_well() {
        assert_eq!(duration_ms(12.4), "12 ms");
        assert_eq!(duration_ms(1_500.0), "1.50 s");
        assert_eq!(duration_ms(90_000.0), "1.5 min");
        assert_eq!(duration_ms(f64::NAN), "—");
        assert_eq!(usd(0.000139), "$0.000139");
        assert_eq!(usd(12.5), "$12.50");
    }

    #[test]
    fn interpolated_text_is_escaped() {
        let markup = status_badge("<script>alert(1)</script>");
        let html = markup.into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
