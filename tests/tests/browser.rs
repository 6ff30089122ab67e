//! The WebDriver harness (`skm_e2e::webdriver`) against a page server of
//! the test's own: a plain HTTP/1.1 server on a std thread that records
//! every form post, so what the browser did is checked on the server's
//! side, not only by asking the browser.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use serde_json::json;
use skm_e2e::webdriver::{Browser, WebDriverError};

const FORM: &str = "<!doctype html><html><head><title>Form</title></head><body>\
    <form method=post action=/submit><label for=n>Name</label><input id=n name=n value=old><button>Go</button></form>\
    </body></html>";
const DONE: &str = "<!doctype html><html><head><title>Done</title></head><body><p id=done>Thanks</p></body></html>";
/// Served with `Content-Security-Policy: default-src 'self'`: the inline
/// script is blocked (the title stays) and the browser logs a violation.
const CSP: &str = "<!doctype html><html><head><title>Strict</title></head><body><p>Strict</p>\
    <script>document.title = 'inline script ran'</script></body></html>";

/// One request as the server saw it.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    body: String,
}

/// Serves the three pages on 127.0.0.1 from a thread; answers its base
/// URL and the requests it receives (every one, favicon included).
fn serve() -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (seen, requests) = mpsc::channel();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let request = answer(tcp);
            if seen.send(request).is_err() {
                return;
            }
        }
    });
    (base, requests)
}

/// Reads one request from `tcp`, answers it and closes the connection.
fn answer(tcp: TcpStream) -> Request {
    let mut reader = BufReader::new(tcp);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or_default().to_owned(), words.next().unwrap_or_default().to_owned());
    let mut length = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let (status, headers, page) = match (method.as_str(), path.as_str()) {
        ("GET", "/") => ("200 OK", "Set-Cookie: visit=first; Path=/; HttpOnly; SameSite=Strict\r\n", FORM),
        ("POST", "/submit") => ("303 See Other", "Location: /done\r\n", ""),
        ("GET", "/done") => ("200 OK", "", DONE),
        ("GET", "/csp") => ("200 OK", "Content-Security-Policy: default-src 'self'\r\n", CSP),
        // No favicon, and no 404 for it in the browser log either.
        ("GET", "/favicon.ico") => ("204 No Content", "", ""),
        _ => ("404 Not Found", "", ""),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
    reader.get_mut().write_all(response.as_bytes()).unwrap();
    Request { method, path, body: String::from_utf8(body).unwrap() }
}

#[test]
fn browser_drives_forms_and_reports_csp_violations_cookies_and_screenshots() {
    let started = Instant::now();
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let _ = std::fs::remove_dir_all(&out_dir);
    let (base, requests) = serve();
    let browser = Browser::start(&out_dir).unwrap();
    println!("browser started in {:?}", started.elapsed());

    browser.goto(&format!("{base}/")).unwrap();
    assert_eq!(browser.title().unwrap(), "Form");
    assert_eq!(browser.current_url().unwrap(), format!("{base}/"));
    assert!(browser.exists("form[action='/submit'] input#n").unwrap());
    assert!(!browser.exists("#missing").unwrap());
    let missing = browser.find("#missing").unwrap_err();
    assert!(format!("{missing:#}").contains("\"#missing\""), "{missing:#}");
    assert_eq!(missing.downcast_ref::<WebDriverError>().map(|e| e.error.as_str()), Some("no such element"));
    assert_eq!(browser.find("label[for=n]").unwrap().text().unwrap(), "Name");
    let input = browser.find("#n").unwrap();
    assert_eq!(input.attr("name").unwrap().as_deref(), Some("n"));
    assert_eq!(input.attr("placeholder").unwrap(), None);

    // The cookie the form page set, as the browser keeps it.
    let cookies = browser.cookies().unwrap();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let visit = &cookies[0];
    assert_eq!((visit.name.as_str(), visit.value.as_str()), ("visit", "first"));
    assert_eq!((visit.http_only, visit.secure, visit.same_site.as_deref()), (true, false, Some("Strict")));
    assert_eq!((visit.path.as_deref(), visit.domain.as_deref(), visit.expiry), (Some("/"), Some("127.0.0.1"), None));

    // `fill` replaces the field's value: the server gets only what was typed,
    // form-encoded, and the redirect after the post is followed (`submit`
    // waits for the new page: reading the URL right after a bare click
    // raced the navigation and saw the old page).
    browser.fill("#n", "Ada & Co").unwrap();
    assert_eq!(input.property("value").unwrap(), json!("Ada & Co"));
    assert_eq!(input.attr("value").unwrap().as_deref(), Some("old"));
    browser.submit("form button").unwrap();
    assert_eq!(browser.current_url().unwrap(), format!("{base}/done"));
    assert_eq!(browser.find("#done").unwrap().text().unwrap(), "Thanks");
    assert!(browser.source().unwrap().contains("<p id=\"done\">Thanks</p>"));
    let seen: Vec<Request> = requests.try_iter().filter(|r| r.path != "/favicon.ico").collect();
    let posts: Vec<&Request> = seen.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1, "{seen:?}");
    assert_eq!((posts[0].path.as_str(), posts[0].body.as_str()), ("/submit", "n=Ada+%26+Co"));
    assert_eq!(
        seen.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>(),
        ["GET /", "POST /submit", "GET /done"]
    );
    assert_eq!(browser.browser_log().unwrap(), [], "pages without CSP log nothing");

    let shot = browser.screenshot("done").unwrap();
    assert_eq!(shot, out_dir.join("done.png"));
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", shot.display());
    assert_eq!(browser.execute("return arguments[0] + 1", &[json!(41)]).unwrap(), json!(42));

    // The page under CSP: the inline script is blocked and logged, once.
    browser.goto(&format!("{base}/csp")).unwrap();
    assert_eq!(browser.title().unwrap(), "Strict", "the inline script must not run");
    let log = browser.browser_log().unwrap();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!((log[0].level.as_str(), log[0].source.as_deref()), ("SEVERE", Some("security")));
    assert!(log[0].message.starts_with(&format!("{base}/csp ")), "{}", log[0].message);
    assert!(
        log[0].message.contains("Executing inline script violates the following Content Security Policy directive"),
        "{}",
        log[0].message
    );
    assert_eq!(browser.browser_log().unwrap(), [], "reading the log empties it");

    browser.back().unwrap();
    assert_eq!(browser.current_url().unwrap(), format!("{base}/done"));
    browser.delete_cookies().unwrap();
    assert_eq!(browser.cookies().unwrap(), []);
    drop(browser);
    println!("browser test took {:?}", started.elapsed());
}
