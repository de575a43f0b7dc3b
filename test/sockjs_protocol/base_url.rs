//! The greeting at the base url and the iframe page (`BaseUrlGreeting`, `IframePage`).

use crate::checks::{assert_content_type, assert_long_cacheable, assert_no_cookie};
use crate::common::{Reply, TestServer};

/// The iframe page up to the script url, which the server may choose.
const IFRAME_BEFORE_URL: &str = r#"<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src=""#;

/// The iframe page after the script url: sockjs-node's layout, the script first and then
/// `SockJS.bootstrap_iframe()` called directly (no `_sockjs_onload` hook before the script).
const IFRAME_AFTER_URL: &str = r#""></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"#;

#[actix_rt::test]
async fn greeting_is_served_at_the_base_url_with_or_without_slash() {
    let server = TestServer::sockjs().await;
    for path in ["/echo", "/echo/"] {
        let r = server.get(path).await;
        assert_eq!(r.status, 200, "GET {path}");
        assert_content_type(&r, "text/plain;charset=UTF-8");
        assert_eq!(r.text(), "Welcome to SockJS!\n");
        assert_no_cookie(&r);
    }
}

#[actix_rt::test]
async fn other_paths_under_the_base_url_are_404() {
    let server = TestServer::sockjs().await;
    for suffix in ["/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"] {
        let r = server.get(&format!("/echo{suffix}")).await;
        assert_eq!(r.status, 404, "GET /echo{suffix}");
        assert_content_type(&r, "text/plain;charset=UTF-8");
        assert_eq!(r.text(), "404 Error: Page not found\n", "sockjs-node's 404");
    }
}

/// Checks one iframe url: a strongly cacheable html page with the expected text.
async fn assert_iframe_page(server: &TestServer, path: &str) -> Reply {
    let r = server.get(path).await;
    assert_eq!(r.status, 200, "GET {path}");
    assert_content_type(&r, "text/html;charset=UTF-8");
    assert_long_cacheable(&r);
    assert!(r.header("etag").is_some(), "ETag expected on {path}");
    assert_eq!(
        r.header("last-modified"),
        None,
        "no Last-Modified on {path}"
    );
    assert_no_cookie(&r);

    let page = r.text().trim();
    let script_url = page
        .strip_prefix(IFRAME_BEFORE_URL)
        .and_then(|rest| rest.strip_suffix(IFRAME_AFTER_URL))
        .unwrap_or_else(|| panic!("{path} is not the iframe page:\n{page}"));
    assert!(!script_url.contains('"'), "script url {script_url:?}");
    assert!(
        script_url.starts_with('/') || script_url.starts_with("http"),
        "script url {script_url:?} must be absolute"
    );
    r
}

#[actix_rt::test]
async fn iframe_page_is_served_strongly_cacheable() {
    let server = TestServer::sockjs().await;
    assert_iframe_page(&server, "/echo/iframe.html").await;
}

#[actix_rt::test]
async fn versioned_iframe_urls_serve_the_iframe_page() {
    let server = TestServer::sockjs().await;
    for suffix in [
        "/iframe-a.html",
        "/iframe-.html",
        "/iframe-0.1.2.html",
        "/iframe-0.1.2abc-dirty.2144.html",
    ] {
        assert_iframe_page(&server, &format!("/echo{suffix}")).await;
    }
}

#[actix_rt::test]
async fn iframe_urls_with_a_query_string_serve_the_iframe_page() {
    let server = TestServer::sockjs().await;
    for suffix in [
        "/iframe-a.html?t=1234",
        "/iframe-0.1.2.html?t=123414",
        "/iframe-0.1.2abc-dirty.2144.html?t=qweqweq123",
    ] {
        assert_iframe_page(&server, &format!("/echo{suffix}")).await;
    }
}

#[actix_rt::test]
async fn malformed_iframe_urls_are_404() {
    let server = TestServer::sockjs().await;
    for suffix in [
        "/iframe.htm",
        "/iframe",
        "/IFRAME.HTML",
        "/IFRAME",
        "/iframe.HTML",
        "/iframe.xml",
        "/iframe-/.html",
    ] {
        let r = server.get(&format!("/echo{suffix}")).await;
        assert_eq!(r.status, 404, "GET /echo{suffix}");
        assert_content_type(&r, "text/plain;charset=UTF-8");
        assert_eq!(r.text(), "404 Error: Page not found\n", "sockjs-node's 404");
    }
}

#[actix_rt::test]
async fn iframe_etag_is_stable_and_if_none_match_gives_304() {
    let server = TestServer::sockjs().await;
    let first = assert_iframe_page(&server, "/echo/iframe.html").await;
    let second = assert_iframe_page(&server, "/echo/iframe.html").await;
    let etag = first.header("etag").expect("ETag");
    assert_eq!(second.header("etag"), Some(etag));

    let r = server
        .request(
            awc::http::Method::GET,
            "/echo/iframe.html",
            &[("If-None-Match", etag)],
            "",
        )
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("content-type"), None, "no Content-Type on 304");
    assert!(r.body.is_empty(), "no body on 304");
}
