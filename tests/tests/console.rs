//! The web console in a real browser (headless Chromium over WebDriver)
//! against `skm dev`'s three real processes: sign-in with one-time codes,
//! the whole operator workflow through the pages (checked afterwards with
//! the CLI), the auditor's read-only console, CSRF, Origin and cookie
//! rules, headers on every page, escaping, and no CSP violation or console
//! error anywhere. Screenshots of the main pages go to
//! `target/console-screenshots/` (the README's comes from there).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use skm_e2e::DevProcess;
use skm_e2e::webdriver::Browser;

fn out_dir() -> PathBuf {
    skm_e2e::repo().join("target").join("console-screenshots")
}

/// The console's address, from a sign-in link.
fn console_addr(link: &str) -> SocketAddr {
    let port = link.trim_start_matches("https://localhost:").split('/').next().unwrap();
    format!("127.0.0.1:{port}").parse().unwrap()
}

fn login(dev: &DevProcess) -> String {
    dev.ok(&["console", "login"], b"").trim().to_owned()
}

fn base(link: &str) -> String {
    link.split("/sign-in").next().unwrap().to_owned()
}

/// An HTTP/1.1 answer of the console.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The head, lowercased.
    head: String,
    raw_head: String,
    body: String,
}

/// Sends one request over TLS (trusting the dev CA) and reads the answer.
async fn exchange(addr: SocketAddr, ca: &Path, request: String) -> Answer {
    let raw = skm_e2e::https_exchange(addr, ca, b"", request.as_bytes()).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status: head.split(' ').nth(1).unwrap_or("0").parse().unwrap(),
        head: head.to_ascii_lowercase(),
        raw_head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn post(addr: SocketAddr, path: &str, origin: Option<&str>, cookie: Option<&str>, body: &str) -> String {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: localhost:{}\r\n", addr.port());
    if let Some(origin) = origin {
        req.push_str(&format!("Origin: {origin}\r\n"));
    }
    if let Some(cookie) = cookie {
        req.push_str(&format!("Cookie: __Host-skm_session={cookie}\r\n"));
    }
    req.push_str(&format!(
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    req
}

fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost:{}\r\n", addr.port());
    if let Some(cookie) = cookie {
        req.push_str(&format!("Cookie: __Host-skm_session={cookie}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    req
}

/// Every page's security headers.
fn assert_security_headers(answer: &Answer, what: &str) {
    for header in [
        "content-security-policy: default-src 'self'; script-src 'self'; style-src 'self'",
        "frame-ancestors 'none'",
        "cache-control: no-store",
        "strict-transport-security: max-age=",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(answer.head.contains(header), "{what}: no {header:?} in\n{}", answer.head);
    }
}

/// Signs in over raw HTTP: the session cookie and the page's CSRF token.
async fn raw_session(addr: SocketAddr, ca: &Path, link: &str) -> (String, String) {
    let code = link.split("code=").nth(1).unwrap();
    let origin = format!("https://localhost:{}", addr.port());
    let answer = exchange(addr, ca, post(addr, "/sign-in", Some(&origin), None, &format!("code={code}"))).await;
    assert_eq!(answer.status, 303, "{answer:?}");
    let cookie = answer.raw_head.split("__Host-skm_session=").nth(1).unwrap().split(';').next().unwrap().to_owned();
    let page = exchange(addr, ca, get(addr, "/", Some(&cookie))).await;
    assert_eq!(page.status, 200, "{page:?}");
    (cookie, csrf_of(&page.body))
}

/// The CSRF token a page's forms carry.
fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned()
}

fn text(browser: &Browser, css: &str) -> String {
    match browser.find(css) {
        Ok(element) => element.text().unwrap(),
        Err(e) => panic!("{e:#}\npage:\n{}", browser.source().unwrap_or_default()),
    }
}

/// Clicks the submit button of `form` and waits for the next page.
fn submit(browser: &Browser, form: &str) {
    browser.submit(&format!("{form} button[type=submit]")).unwrap();
}

/// No CSP violation and no error in the browser's log so far, but the
/// answers in `refused` (path and status of what was refused on purpose:
/// a form shown again with the error by its field, a page for admins).
fn assert_clean_log(browser: &Browser, refused: &[(&str, u16)]) {
    let bad: Vec<_> = browser
        .browser_log()
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.level == "SEVERE"
                || e.message.contains("Content Security Policy")
                || e.source.as_deref() == Some("security")
        })
        .filter(|e| {
            let expected = e.source.as_deref() == Some("network")
                && refused.iter().any(|(path, status)| {
                    e.message.contains(&format!("status of {status} "))
                        && e.message.split(' ').next().is_some_and(|url| url.ends_with(path))
                });
            !expected
        })
        .collect();
    assert!(bad.is_empty(), "browser log: {bad:#?}");
}

fn wait_for_file(dir: &Path, suffix: &str) -> PathBuf {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(suffix));
        if let Some(found) = found {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "no *{suffix} downloaded into {} within 20 s", dir.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn downloads() -> PathBuf {
    out_dir().join("downloads")
}

/// The whole operator workflow through the pages, then the CLI sees the
/// same state; a client certificate issued in the console makes real calls
/// until the console revokes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_runs_the_whole_workflow_in_a_browser() {
    let dev = DevProcess::start().unwrap();
    let ca = dev.data_dir().join("app").join("ca.pem");
    let _ = std::fs::remove_dir_all(downloads());
    let browser = Browser::start(&out_dir()).unwrap();

    // Sign in with a one-time code; the cookie's flags.
    let link = login(&dev);
    let console = base(&link);
    let addr = console_addr(&link);
    browser.goto(&link).unwrap();
    browser.submit("#sign-in").unwrap();
    assert_eq!(browser.current_url().unwrap(), format!("{console}/"));
    assert_eq!(text(&browser, "#whoami"), "operator/admin/admin (admin)");
    let cookies = browser.cookies().unwrap();
    let session = cookies.iter().find(|c| c.name == "__Host-skm_session").expect("the session cookie");
    assert!(session.secure && session.http_only, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"));
    assert_eq!(session.path.as_deref(), Some("/"));
    assert!(text(&browser, "#tiers").contains("root-keyd serving (unsealed)"), "{}", text(&browser, "#tiers"));
    assert!(
        text(&browser, "#system-key").starts_with("Version 1 active; held: v1"),
        "{}",
        text(&browser, "#system-key")
    );
    assert!(text(&browser, "#audit-health").starts_with("Writable"));
    assert!(text(&browser, "#counts").starts_with("0 keystores, 0 keys"));
    browser.screenshot("overview").unwrap();

    // A used code is refused (and changes nothing).
    let other = Browser::start(&out_dir().join("second-browser")).unwrap();
    other.goto(&link).unwrap();
    other.submit("#sign-in").unwrap();
    assert!(other.source().unwrap().contains("This sign-in code is unknown, used or expired"));
    assert!(other.cookies().unwrap().iter().all(|c| c.name != "__Host-skm_session"));
    drop(other);

    // A keystore with a policy; a name with markup is refused and shown as text.
    browser.goto(&format!("{console}/keystores")).unwrap();
    let hostile = "<script>alert('x')</script>\"";
    browser.fill("#create-keystore-name", hostile).unwrap();
    submit(&browser, "#create-keystore");
    let error = text(&browser, "#create-keystore-name-error");
    assert!(error.contains("found '<'"), "the refusal, next to its field, as text: {error}");
    let kept = browser.find("#create-keystore-name").unwrap().property("value").unwrap();
    assert_eq!(kept.as_str(), Some(hostile), "the value entered comes back intact in the field");
    assert!(browser.find_all("script").unwrap().is_empty(), "no script element on the page");
    assert!(browser.source().unwrap().contains("&lt;script&gt;"));
    browser.fill("#create-keystore-name", "web-shop").unwrap();
    browser.fill("#create-keystore-allow_ips", "10.0.0.0/8\n127.0.0.1").unwrap();
    browser.click("#create-keystore-require_cert").unwrap();
    submit(&browser, "#create-keystore");
    assert!(text(&browser, ".flash").contains("Keystore web-shop created"));
    let keystore = text(&browser, "#keystore-id");
    browser.screenshot("keystore").unwrap();

    // An AES key and an Ed25519 key.
    browser.fill("#create-key-name", "orders").unwrap();
    submit(&browser, "#create-key");
    let aes = text(&browser, "#key-id");
    assert_eq!(text(&browser, "#key-type"), "aes-256");
    browser.goto(&format!("{console}/keystores/{keystore}")).unwrap();
    browser.fill("#create-key-name", "release-signing").unwrap();
    browser.click("#create-key-type option[value=ed25519]").unwrap();
    submit(&browser, "#create-key");
    let ed = text(&browser, "#key-id");
    assert_eq!(text(&browser, "#key-type"), "ed25519");
    browser.click("#public-key").unwrap();
    let pem = std::fs::read_to_string(wait_for_file(&downloads(), ".pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");

    // A secret uploaded from a file, byte for byte; an external certificate
    // registered by uploading its PEM.
    let uploads = tempfile::tempdir().unwrap();
    let secret_file = uploads.path().join("db-password.txt");
    let secret_value = "pa55 wörd\r\nwith two lines\n";
    std::fs::write(&secret_file, secret_value).unwrap();
    browser.goto(&format!("{console}/keystores/{keystore}")).unwrap();
    browser.fill("#create-secret-name", "db-password").unwrap();
    browser.find("#create-secret-file").unwrap().send_keys(secret_file.to_str().unwrap()).unwrap();
    submit(&browser, "#create-secret");
    let secret = text(&browser, "#key-id");
    assert_eq!(text(&browser, "#key-type"), "secret");
    assert!(!browser.source().unwrap().contains("pa55"), "the console never shows a secret value");
    browser.goto(&format!("{console}/keystores/{keystore}")).unwrap();
    browser.fill("#register-cert-name", "partner").unwrap();
    browser.find("#register-cert-file").unwrap().send_keys(ca.to_str().unwrap()).unwrap();
    submit(&browser, "#register-cert");
    let der = skm_runtime::tls::certs_from_pem(&std::fs::read(&ca).unwrap()).unwrap().remove(0);
    let partner_sha = hex::encode(skm_crypto::sha256(&der));
    assert!(text(&browser, "#certificates").contains(&partner_sha), "{}", text(&browser, "#certificates"));

    // Rotate, disable/enable, schedule and cancel deletion of the AES key.
    browser.goto(&format!("{console}/keys/{aes}")).unwrap();
    browser.submit("#rotate").unwrap();
    assert_eq!(text(&browser, "#key-version"), "2");
    browser.submit("#disable").unwrap();
    assert_eq!(text(&browser, "#key-state"), "disabled");
    browser.submit("#enable").unwrap();
    assert_eq!(text(&browser, "#key-state"), "enabled");
    browser.fill("#schedule-deletion-pending_days", "7").unwrap();
    browser.fill("#schedule-deletion-confirm", "not-its-name").unwrap();
    submit(&browser, "#schedule-deletion");
    assert!(text(&browser, "#schedule-deletion-confirm-error").contains("type the key's name (orders)"));
    assert_eq!(text(&browser, "#key-state"), "enabled", "nothing changed");
    browser.fill("#schedule-deletion-pending_days", "7").unwrap();
    browser.fill("#schedule-deletion-confirm", "orders").unwrap();
    submit(&browser, "#schedule-deletion");
    assert!(text(&browser, "#key-state").starts_with("pending deletion"), "{}", text(&browser, "#key-state"));
    browser.submit("#cancel-deletion").unwrap();
    assert_eq!(text(&browser, "#key-state"), "disabled");
    browser.submit("#enable").unwrap();
    assert_eq!(text(&browser, "#key-state"), "enabled");
    browser.screenshot("key").unwrap();

    // A client certificate: issued and downloaded as PKCS#12, opened with
    // openssl, used for a real call, then revoked in the console.
    browser.goto(&format!("{console}/keystores/{keystore}")).unwrap();
    browser.fill("#issue-cert-name", "web-app").unwrap();
    browser.fill("#issue-cert-password", "correct horse battery").unwrap();
    // A download: the page stays.
    browser.click("#issue-cert button[type=submit]").unwrap();
    let p12 = wait_for_file(&downloads(), "web-app.p12");
    let opened = std::process::Command::new("openssl")
        .args(["pkcs12", "-in"])
        .arg(&p12)
        .args(["-passin", "pass:correct horse battery", "-nokeys", "-clcerts"])
        .output()
        .unwrap();
    assert!(opened.status.success(), "{}", String::from_utf8_lossy(&opened.stderr));
    assert!(String::from_utf8_lossy(&opened.stdout).contains("CN=web-app"));
    let files = tempfile::tempdir().unwrap();
    let password = files.path().join("pw");
    std::fs::write(&password, "correct horse battery").unwrap();
    let with_cert = |args: &[&str]| {
        let mut all = vec!["--p12", p12.to_str().unwrap(), "--p12-password-file", password.to_str().unwrap()];
        all.extend_from_slice(args);
        dev.run(&all, b"hello")
    };
    let encrypted = with_cert(&["encrypt", &aes]);
    assert!(encrypted.status.success(), "{}", String::from_utf8_lossy(&encrypted.stderr));
    let got = with_cert(&["secret", "get", &secret]);
    assert_eq!(String::from_utf8(got.stdout).unwrap(), secret_value, "{}", String::from_utf8_lossy(&got.stderr));
    let without = dev.run(&["encrypt", &aes], b"hello");
    assert!(String::from_utf8_lossy(&without.stderr).contains("PERMISSION_DENIED"));
    browser.goto(&format!("{console}/keystores/{keystore}")).unwrap();
    assert!(text(&browser, "#certificates").contains("web-app"));
    browser.submit("#certificates button[aria-label='Revoke web-app']").unwrap();
    assert!(text(&browser, "#certificates").contains("revoked"));
    let revoked = with_cert(&["encrypt", &aes]);
    assert!(String::from_utf8_lossy(&revoked.stderr).contains("PERMISSION_DENIED"), "revoked: refused");

    // The audit log, filtered, and its verification.
    browser.goto(&format!("{console}/audit?since=someday")).unwrap();
    assert!(browser.source().unwrap().contains("since: \"someday\" is not a time"), "named field and words");
    browser.goto(&format!("{console}/audit?operation=RotateKey&since=2000-01-01")).unwrap();
    let rows = text(&browser, "#audit");
    assert!(rows.contains("RotateKey") && rows.contains("console") && rows.contains("operator/admin/admin"), "{rows}");
    assert!(!rows.contains("CreateKey"), "the filter holds: {rows}");
    browser.screenshot("audit").unwrap();
    browser.goto(&format!("{console}/audit/verify")).unwrap();
    assert!(text(&browser, "#verify-result").starts_with("intact"), "{}", text(&browser, "#verify-result"));
    browser.goto(&format!("{console}/operators")).unwrap();
    assert!(text(&browser, "#sessions").contains("operator/admin/admin"));
    browser.goto(&format!("{console}/keystores")).unwrap();
    browser.screenshot("keystores").unwrap();

    // Every page: the headers, and nothing the browser complained about.
    for path in [
        "/",
        "/keystores",
        &format!("/keystores/{keystore}"),
        &format!("/keys/{aes}"),
        &format!("/keys/{ed}"),
        "/audit",
        "/audit/verify",
        "/operators",
    ] {
        browser.goto(&format!("{console}{path}")).unwrap();
    }
    let deletion = format!("/keys/{aes}/schedule-deletion");
    assert_clean_log(&browser, &[("/keystores", 400), (&deletion, 400), ("/audit?since=someday", 400)]);
    let cookie = browser.cookies().unwrap().into_iter().find(|c| c.name == "__Host-skm_session").unwrap().value;
    for path in ["/", "/keystores", &format!("/keys/{aes}"), "/audit", "/operators", "/signed-out", "/sign-in"] {
        let answer = exchange(addr, &ca, get(addr, path, Some(&cookie))).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_security_headers(&answer, path);
    }

    // A form on another origin posting to the console: the browser sends
    // no session cookie (SameSite=Strict) and the console refuses it.
    let evil = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let evil_url = format!("http://{}/", evil.local_addr().unwrap());
    let action = format!("{console}/keys/{aes}/rotate");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in evil.incoming().take(2) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let page = format!(
                "<!DOCTYPE html><title>elsewhere</title><form method=post action=\"{action}\">\
                 <input type=hidden name=csrf value=guess><button id=go>Win a prize</button></form>"
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    browser.goto(&evil_url).unwrap();
    browser.submit("#go").unwrap();
    assert!(browser.source().unwrap().contains("not signed in"), "{}", browser.source().unwrap());
    let _ = browser.browser_log();

    // The CLI sees what the console did.
    let shown: serde_json::Value = serde_json::from_str(&dev.ok(&["--json", "key", "show", &aes], b"")).unwrap();
    assert_eq!(shown["current_version"], 2, "{shown}");
    assert_eq!(shown["state"], "enabled", "{shown}");
    let ks: serde_json::Value = serde_json::from_str(&dev.ok(&["--json", "keystore", "show", &keystore], b"")).unwrap();
    assert!(ks.to_string().contains("10.0.0.0/8"), "{ks}");
    assert!(dev.ok(&["audit", "verify"], b"").contains("intact"));
    let audit = dev.ok(&["--json", "audit", "list", "--key", &aes], b"");
    assert!(audit.contains("\"console\""), "entries name the console: {audit}");

    // Sign-out ends the session on the server.
    browser.goto(&format!("{console}/")).unwrap();
    browser.submit(".signout button").unwrap();
    assert!(browser.current_url().unwrap().ends_with("/signed-out"));
    let after = exchange(addr, &ca, get(addr, "/", Some(&cookie))).await;
    assert_eq!(after.status, 303, "the old cookie no longer opens a page: {after:?}");
}

/// An auditor's console is read-only on the server, not only in the page;
/// forms without this session's CSRF token or from another origin are
/// refused and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_foreign_posts_are_refused() {
    let dev = DevProcess::start().unwrap();
    let ca = dev.data_dir().join("app").join("ca.pem");
    let keystore = dev.ok(&["keystore", "create", "shop", "--allow-ip", "127.0.0.1"], b"").trim().to_owned();
    let key = dev.ok(&["key", "create", &keystore, "orders", "--type", "aes-256"], b"").trim().to_owned();
    // A code minted now is tried once it has expired, at the end.
    let stale = login(&dev);
    let minted = std::time::Instant::now();
    let version = |dev: &DevProcess| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&dev.ok(&["--json", "key", "show", &key], b"")).unwrap()["current_version"].clone()
    };
    assert_eq!(version(&dev), 1);

    // An auditor: sign in through the browser; no write controls.
    let files = tempfile::tempdir().unwrap();
    let (auditor_profile, auditor_sha) = dev.add_operator("ann", "auditor", files.path());
    let auditor_login = std::process::Command::new(skm_e2e::skm_bin())
        .args(["console", "login"])
        .env("SKM_PROFILE", &auditor_profile)
        .output()
        .unwrap();
    assert!(auditor_login.status.success(), "{}", String::from_utf8_lossy(&auditor_login.stderr));
    let auditor_link = String::from_utf8(auditor_login.stdout).unwrap().trim().to_owned();
    let console = base(&auditor_link);
    let addr = console_addr(&auditor_link);
    let browser = Browser::start(&out_dir().join("auditor")).unwrap();
    browser.goto(&auditor_link).unwrap();
    browser.submit("#sign-in").unwrap();
    assert_eq!(text(&browser, "#whoami"), "operator/auditor/ann (auditor)");
    browser.goto(&format!("{console}/keystores/{keystore}")).unwrap();
    for control in ["#create-key", "#create-secret", "#issue-cert", "#delete-keystore", "#policy button"] {
        assert!(!browser.exists(control).unwrap(), "an auditor sees no {control}");
    }
    browser.goto(&format!("{console}/keys/{key}")).unwrap();
    for control in ["#rotate", "#disable", "#schedule-deletion"] {
        assert!(!browser.exists(control).unwrap(), "an auditor sees no {control}");
    }
    assert!(text(&browser, "#versions").contains('1'));
    assert!(!browser.exists("a[href='/operators']").unwrap(), "the operators page is the admins'");
    browser.goto(&format!("{console}/operators")).unwrap();
    assert!(browser.source().unwrap().contains("the operators page needs the admin role"));
    assert_clean_log(&browser, &[("/operators", 403)]);

    // A forged POST with the auditor session's own valid CSRF token: 403.
    let (auditor_cookie, auditor_csrf) = raw_session(addr, &ca, &login_as(&auditor_profile)).await;
    let origin = format!("https://localhost:{}", addr.port());
    let forged = exchange(
        addr,
        &ca,
        post(
            addr,
            &format!("/keys/{key}/rotate"),
            Some(&origin),
            Some(&auditor_cookie),
            &format!("csrf={auditor_csrf}"),
        ),
    )
    .await;
    assert_eq!(forged.status, 403, "{forged:?}");
    assert!(forged.body.contains("this operation needs the admin role"), "{}", forged.body);
    assert_eq!(version(&dev), 1, "nothing changed");

    // An admin session: without the token, with a wrong one, from another
    // origin, without an Origin: 403 and nothing changes; the real form works.
    let (cookie, csrf) = raw_session(addr, &ca, &login(&dev)).await;
    let rotate = format!("/keys/{key}/rotate");
    for (what, origin, body) in [
        ("no token", Some(origin.as_str()), String::new()),
        ("a wrong token", Some(origin.as_str()), format!("csrf={auditor_csrf}")),
        ("another origin", Some("https://evil.example"), format!("csrf={csrf}")),
        ("no Origin", None, format!("csrf={csrf}")),
    ] {
        let answer = exchange(addr, &ca, post(addr, &rotate, origin, Some(&cookie), &body)).await;
        assert_eq!(answer.status, 403, "{what}: {answer:?}");
        assert_security_headers(&answer, what);
    }
    assert_eq!(version(&dev), 1, "nothing changed");
    let answer = exchange(addr, &ca, post(addr, &rotate, Some(&origin), Some(&cookie), &format!("csrf={csrf}"))).await;
    assert_eq!(answer.status, 303, "{answer:?}");
    assert_eq!(version(&dev), 2);

    // A POST without a session, and a page without one.
    let answer = exchange(addr, &ca, post(addr, &rotate, Some(&origin), None, &format!("csrf={csrf}"))).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    let answer = exchange(addr, &ca, get(addr, "/keystores", None)).await;
    assert_eq!(answer.status, 303);
    assert!(answer.head.contains("location: /signed-out"), "{}", answer.head);

    // Revoking the auditor's certificate ends its session at once.
    dev.ok(&["pki", "revoke-operator", "--sha256", &auditor_sha], b"");
    let answer = exchange(addr, &ca, get(addr, "/", Some(&auditor_cookie))).await;
    assert_eq!(answer.status, 303, "a revoked operator's session is gone: {answer:?}");
    let audit = dev.ok(&["--json", "audit", "list", "--key", &key], b"");
    assert!(audit.contains("operator/auditor/ann") && audit.contains("this operation needs the admin role"), "{audit}");

    // The code minted at the start has expired, unused.
    if let Some(rest) = Duration::from_secs(61).checked_sub(minted.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let code = stale.split("code=").nth(1).unwrap();
    let answer = exchange(addr, &ca, post(addr, "/sign-in", Some(&origin), None, &format!("code={code}"))).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("unknown, used or expired"));
    assert!(!answer.head.contains("set-cookie: __host-skm_session=") || answer.head.contains("max-age=0"));
}

fn login_as(profile: &Path) -> String {
    let out = std::process::Command::new(skm_e2e::skm_bin())
        .args(["console", "login"])
        .env("SKM_PROFILE", profile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
