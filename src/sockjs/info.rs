//! The session-less URLs of an endpoint: the greeting, `/info` and the iframe page.

use std::hash::{DefaultHasher, Hash, Hasher};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use super::headers::{self, HTML, JSON, TEXT_PLAIN};
use super::options::SockjsOptions;

/// `GET {prefix}` and `{prefix}/`.
pub fn greeting() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(TEXT_PLAIN)
        .body("Welcome to SockJS!\n")
}

/// `GET {prefix}/info`: server capabilities and fresh entropy for the client.
pub fn info(req: &HttpRequest, options: &SockjsOptions) -> HttpResponse {
    let body = serde_json::json!({
        "websocket": options.websocket,
        "cookie_needed": options.cookie_needed,
        "origins": origins(options),
        "entropy": rand::random::<u32>(),
    });
    let mut res = HttpResponse::Ok();
    res.content_type(JSON);
    headers::no_cache(&mut res);
    headers::cors(req, &mut res, headers::Cors::Credentialed);
    res.body(body.to_string())
}

/// The `origins` of `/info`: SockJS's `*:*` when any page may connect, else `host:port` of
/// each allowed origin (the default port of its scheme written out).
fn origins(options: &SockjsOptions) -> Vec<String> {
    if options.allowed_origins.is_empty() {
        return vec!["*:*".into()];
    }
    options
        .allowed_origins
        .iter()
        .map(|origin| {
            let (scheme, host) = origin.split_once("://").unwrap_or(("http", origin));
            let has_port = host
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
            if has_port {
                host.to_string()
            } else {
                let port = if scheme == "https" { 443 } else { 80 };
                format!("{host}:{port}")
            }
        })
        .collect()
}

/// The iframe page, rendered once per endpoint, with its ETag.
#[derive(Debug, Clone)]
pub struct IframePage {
    body: String,
    etag: String,
}

impl IframePage {
    /// Renders the page that loads the SockJS client from `client_url`, laid out as
    /// sockjs-node's: the script first, then `SockJS.bootstrap_iframe()` called directly, not
    /// through an `_sockjs_onload` hook set before it (a hook that only works if the client
    /// build still calls it). The URL is attribute-escaped so that a configured value cannot break out
    /// of the `src` attribute.
    pub fn new(client_url: &str) -> Self {
        let src = escape_attribute(client_url);
        let body = format!(
            "<!DOCTYPE html>\n\
             <html>\n\
             <head>\n\
             \x20 <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n\
             \x20 <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n\
             \x20 <script src=\"{src}\"></script>\n\
             \x20 <script>\n\
             \x20   document.domain = document.domain;\n\
             \x20   SockJS.bootstrap_iframe();\n\
             \x20 </script>\n\
             </head>\n\
             <body>\n\
             \x20 <h2>Don't panic!</h2>\n\
             \x20 <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n\
             </body>\n\
             </html>"
        );
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = format!("\"{:016x}\"", hasher.finish());
        IframePage { body, etag }
    }

    /// `GET {prefix}/iframe*.html`, answering `304` to a matching `If-None-Match`.
    pub fn respond(&self, req: &HttpRequest) -> HttpResponse {
        let matches = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == self.etag));
        if matches {
            return HttpResponse::NotModified().finish();
        }
        let mut res = HttpResponse::Ok();
        res.content_type(HTML);
        headers::cache_for_a_year(&mut res);
        res.insert_header((header::ETAG, self.etag.clone()));
        res.body(self.body.clone())
    }
}

/// Whether `name` (the path after the prefix, without the leading `/`) is an iframe page name:
/// `iframe.html` or `iframe<version>.html` with a version of `[0-9a-z_.-]`.
pub fn is_iframe_path(name: &str) -> bool {
    name.strip_prefix("iframe")
        .and_then(|rest| rest.strip_suffix(".html"))
        .is_some_and(|version| {
            version
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b"-._".contains(&b))
        })
}

fn escape_attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iframe_names() {
        for ok in [
            "iframe.html",
            "iframe-a.html",
            "iframe-.html",
            "iframe-0.1.2.html",
            "iframe-0.1.2abc-dirty.2144.html",
        ] {
            assert!(is_iframe_path(ok), "{ok}");
        }
        for bad in [
            "iframe.htm",
            "iframe",
            "IFRAME.HTML",
            "iframe.HTML",
            "iframe.xml",
            "iframe-/.html",
            "iframeX.html",
        ] {
            assert!(!is_iframe_path(bad), "{bad}");
        }
    }

    #[test]
    fn iframe_page_escapes_the_client_url() {
        let page = IframePage::new("x\"><script>alert(1)</script>");
        assert!(!page.body.contains("\"><script>alert"));
        assert!(page.body.contains("src=\"x&quot;&gt;&lt;script&gt;"));
    }
}
