//! kms-api's web console: an operator plane in the browser, on its own
//! HTTPS listener (`console_listen`; served by [`skm_runtime::http`] with
//! the same accept loop, TLS 1.3 and limits as the other listeners).
//!
//! Server-rendered HTML ([`pages`], maud templates compiled into the
//! binary, every interpolation escaped), plain forms, one stylesheet and no
//! script. A converter like the other front ends: each page or form is one
//! core operation run as the signed-in operator with front end `console`,
//! so the core authorises (an auditor's POST is refused there, 403), acts
//! and audits exactly as for the CLI.
//!
//! Sign-in: `skm console login` mints a one-time code on the admin port;
//! its link shows a page whose form posts the code (so a link preview
//! can't spend it); the answer sets the session cookie
//! ([`SESSION_COOKIE`]: `__Host-`, HttpOnly, Secure, SameSite=Strict). Every
//! POST needs the session's CSRF token and an `Origin` equal to the
//! console's own; every answer carries [`security_headers`].

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::Full;
use maud::Markup;
use skm_runtime::PeerInfo;
use skm_runtime::http::{HttpApi, HttpResponse, Outcome, Refusal};
use skm_store::Store;
use zeroize::Zeroizing;

use crate::access::Facts;
use crate::kms::{self, Caller, ConsoleSession, FrontEnd, Kms, KmsError};

mod forms;
mod pages;

use forms::Form;
pub(crate) use pages::{Flash, TierProbe};

/// The session cookie's name (`__Host-`: Secure, path `/`, no domain).
pub(crate) const SESSION_COOKIE: &str = "__Host-skm_session";

/// The most a form body may be (a secret of `MAX_SECRET` bytes, percent
/// encoded, fits).
const BODY_LIMIT: usize = 128 * 1024;

/// The stylesheet and the icon, the console's only static files.
const STYLESHEET: &str = include_str!("console/console.css");
const ICON: &str = include_str!("console/icon.svg");

/// The Content-Security-Policy of every answer: only our own stylesheet
/// and nothing else, not even our own script (there is none).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The web console over the domain core.
pub(crate) struct ConsoleApi<S> {
    pub(crate) kms: Arc<Kms<S>>,
    /// The console's origin (`https://host:port`): a POST's `Origin`
    /// must be it (or the request's own host).
    pub(crate) origin: String,
    /// kms-api's health, root-keyd's and system-keyd's as kms-api sees
    /// them (the overview page).
    pub(crate) tiers: TierProbe,
}

/// One request as the handlers read it.
pub(crate) struct Request {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    headers: http::HeaderMap,
    authority: Option<String>,
    peer: PeerInfo,
    body: Option<hyper::body::Incoming>,
}

/// What a handler answers.
pub(crate) enum Answer {
    /// A page.
    Page(StatusCode, Markup),
    /// 303 to another page.
    SeeOther(String),
    /// The stylesheet.
    Stylesheet,
    /// The icon.
    Icon,
    /// A file download.
    Download { content_type: &'static str, filename: String, body: Vec<u8> },
}

/// The handler's answer with the operation it ran (metrics) and a cookie
/// to set.
struct Reply {
    operation: &'static str,
    code: &'static str,
    answer: Answer,
    cookie: Option<String>,
}

impl Reply {
    fn new(operation: &'static str, answer: Answer) -> Self {
        Self { operation, code: "OK", answer, cookie: None }
    }

    /// A page that answers a refusal, with its status and the gRPC code
    /// name it counts under in the metrics.
    fn refusal(operation: &'static str, status: StatusCode, code: &'static str, markup: Markup) -> Self {
        Self { operation, code, answer: Answer::Page(status, markup), cookie: None }
    }
}

/// The headers every answer carries.
pub(crate) fn security_headers(headers: &mut http::HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
}

fn response(reply: Reply) -> HttpResponse {
    let (status, content_type, body, disposition, location) = match reply.answer {
        Answer::Page(status, markup) => {
            (status, "text/html; charset=utf-8", Bytes::from(markup.into_string()), None, None)
        }
        Answer::Stylesheet => {
            (StatusCode::OK, "text/css; charset=utf-8", Bytes::from_static(STYLESHEET.as_bytes()), None, None)
        }
        Answer::Icon => (StatusCode::OK, "image/svg+xml", Bytes::from_static(ICON.as_bytes()), None, None),
        Answer::SeeOther(location) => {
            (StatusCode::SEE_OTHER, "text/plain; charset=utf-8", Bytes::new(), None, Some(location))
        }
        Answer::Download { content_type, filename, body } => {
            (StatusCode::OK, content_type, Bytes::from(body), Some(filename), None)
        }
    };
    let mut response = http::Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    security_headers(headers);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(name) = disposition {
        let value = format!("attachment; filename=\"{}\"", forms::safe_filename(&name));
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    if let Some(cookie) = reply.cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response.extensions_mut().insert(Outcome { operation: reply.operation, code: reply.code });
    response
}

fn session_cookie(token: &str, max_age: i64) -> String {
    format!("{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

fn cleared_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session token the browser sent, if any.
fn cookie_token(headers: &http::HeaderMap) -> Option<Zeroizing<String>> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == SESSION_COOKIE && !value.is_empty()).then(|| Zeroizing::new(value.to_owned()))
    })
}

/// A refusal page (403) that names why.
fn forbidden(operation: &'static str, why: &str) -> Reply {
    Reply::refusal(operation, StatusCode::FORBIDDEN, "PERMISSION_DENIED", pages::message_page("Forbidden", why))
}

/// The answer to a path no page or form has (404).
fn not_found(what: &str) -> Reply {
    Reply::refusal("not-found", StatusCode::NOT_FOUND, "NOT_FOUND", pages::message_page("Not found", what))
}

impl Request {
    /// Whether a POST comes from the console's own pages: its `Origin` is
    /// the console's configured origin or the request's own host, or —
    /// because `Referrer-Policy: no-referrer` makes browsers send
    /// `Origin: null` on form posts — it is `null` and the browser's
    /// `Sec-Fetch-Site` says `same-origin`. A client that sends neither is
    /// refused.
    fn same_origin(&self, origin: &str) -> bool {
        let header = |name: &str| self.headers.get(name).and_then(|v| v.to_str().ok());
        match header("origin") {
            Some("null") => header("sec-fetch-site") == Some("same-origin"),
            Some(sent) => {
                sent == origin || self.authority.as_deref().is_some_and(|host| sent == format!("https://{host}"))
            }
            None => false,
        }
    }

    async fn form(&mut self) -> Result<Form, String> {
        let Some(body) = self.body.take() else { return Ok(Form::default()) };
        let bytes = skm_runtime::http::read_body(body, BODY_LIMIT).await.map_err(|e| match e {
            skm_runtime::http::BodyError::TooLarge { limit, .. } => {
                format!("the form is larger than the console's limit of {limit} bytes")
            }
            skm_runtime::http::BodyError::Failed => "the form could not be read".to_owned(),
        })?;
        let content_type = self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        match forms::multipart_boundary(content_type) {
            Some(boundary) => Form::parse_multipart(&bytes, &boundary)
                .ok_or_else(|| "the form (multipart/form-data) is not well formed".to_owned()),
            None => Ok(Form::parse(&bytes)),
        }
    }
}

impl<S: Store + Clone> HttpApi for ConsoleApi<S> {
    async fn handle(&self, request: http::Request<hyper::body::Incoming>, peer: PeerInfo) -> HttpResponse {
        let (parts, body) = request.into_parts();
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned));
        let query = parts.uri.query().map(|q| Form::parse(q.as_bytes()).into_map()).unwrap_or_default();
        let mut request = Request {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query,
            headers: parts.headers,
            authority,
            peer,
            body: Some(body),
        };
        let reply = self.route(&mut request).await;
        let mut response = response(reply);
        if let Some(body) = request.body.take()
            && !skm_runtime::http::drain(body, 64 * 1024).await
        {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    fn refusal(&self, _path: &str, refusal: Refusal) -> HttpResponse {
        let (status, text) = match refusal {
            Refusal::Shed { max_in_flight, retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Overloaded: {max_in_flight} requests in flight on the console (max_in_flight); retry after {} ms.",
                    retry_after.as_millis()
                ),
            ),
            Refusal::Timeout(limit) => {
                (StatusCode::GATEWAY_TIMEOUT, format!("The request took longer than {} ms.", limit.as_millis()))
            }
        };
        response(Reply::refusal("refused", status, "RESOURCE_EXHAUSTED", pages::message_page("Try again", &text)))
    }

    fn unshed(&self, _path: &str) -> bool {
        false
    }
}

/// A signed-in request: the session and the caller it acts as.
pub(crate) struct Ctx {
    pub(crate) session: ConsoleSession,
    pub(crate) caller: Caller,
    /// The token of the session (sign-out ends it).
    token: Zeroizing<String>,
}

impl Ctx {
    /// Whether the operator may change things (the admin role): write
    /// controls are shown only then; the core refuses anyway.
    pub(crate) fn can_write(&self) -> bool {
        self.session.operator.role == skm_runtime::Role::Admin
    }
}

impl<S: Store + Clone> ConsoleApi<S> {
    async fn route(&self, request: &mut Request) -> Reply {
        let path = request.path.clone();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let method = request.method.clone();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["static", "console.css"]) => return Reply::new("static", Answer::Stylesheet),
            (&Method::GET, ["static", "icon.svg"] | ["favicon.ico"]) => return Reply::new("static", Answer::Icon),
            (&Method::GET, ["sign-in"]) => {
                let code = request.query.get("code").cloned().unwrap_or_default();
                return Reply::new("sign-in", Answer::Page(StatusCode::OK, pages::sign_in(&code, None)));
            }
            (&Method::POST, ["sign-in"]) => return self.sign_in(request).await,
            (&Method::GET, ["signed-out"]) => {
                return Reply::new("signed-out", Answer::Page(StatusCode::OK, pages::signed_out()));
            }
            _ => {}
        }
        let Some(token) = cookie_token(&request.headers) else {
            return self.no_session(&method);
        };
        let Some(session) = self.kms.console_session(&token) else {
            let mut reply = self.no_session(&method);
            reply.cookie = Some(cleared_cookie());
            return reply;
        };
        let mut facts = session.operator.facts.clone();
        // The address of this request; the certificate stays the one that
        // minted the sign-in code (checked for revocation on every call).
        facts.ip = Some(request.peer.remote_addr.ip().to_canonical());
        let operator = kms::Operator { facts, ..session.operator.clone() };
        let ctx = Ctx { caller: Caller::operator(operator, FrontEnd::Console), session, token };
        if method == Method::POST {
            if !request.same_origin(&self.origin) {
                return forbidden("csrf", "This form was not sent from the console's own pages (Origin check).");
            }
            let form = match request.form().await {
                Ok(form) => form,
                Err(why) => {
                    let page = pages::message_page("Form refused", &why);
                    return Reply::refusal("form", StatusCode::PAYLOAD_TOO_LARGE, "INVALID_ARGUMENT", page);
                }
            };
            if !ctx.session.csrf_matches(form.get("csrf")) {
                return forbidden("csrf", "The form's CSRF token is missing or not this session's; reload the page.");
            }
            return self.post(&ctx, &segments, form).await;
        }
        if method != Method::GET {
            let page = pages::message_page("Not allowed", "Use GET or POST.");
            return Reply::refusal("method", StatusCode::METHOD_NOT_ALLOWED, "UNIMPLEMENTED", page);
        }
        self.get(&ctx, &segments, &request.query).await
    }

    fn no_session(&self, method: &Method) -> Reply {
        if *method == Method::GET {
            Reply::new("signed-out", Answer::SeeOther("/signed-out".to_owned()))
        } else {
            forbidden("session", "You are not signed in (or your session has ended); run `skm console login`.")
        }
    }

    async fn sign_in(&self, request: &mut Request) -> Reply {
        if !request.same_origin(&self.origin) {
            return forbidden("sign-in", "This form was not sent from the console's own pages (Origin check).");
        }
        let code = match request.form().await {
            Ok(form) => Zeroizing::new(form.get("code").to_owned()),
            Err(why) => return forbidden("sign-in", &why),
        };
        let Some(operator) = self.kms.redeem_console_code(&code) else {
            tracing::warn!(client = %request.peer.remote_addr.ip(), "console sign-in refused: code unknown, used or expired");
            let why = "This sign-in code is unknown, used or expired; run `skm console login` again.";
            return Reply::refusal(
                "sign-in",
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                pages::sign_in("", Some(why)),
            );
        };
        let facts = Facts { ip: Some(request.peer.remote_addr.ip().to_canonical()), ..operator.facts.clone() };
        let caller = Caller::operator(kms::Operator { facts, ..operator }, FrontEnd::Console);
        match self.kms.execute(&caller, kms::OpenConsoleSession).await {
            Ok(opened) => {
                let mut reply = Reply::new("sign-in", Answer::SeeOther("/".to_owned()));
                reply.cookie = Some(session_cookie(&opened.token, self.kms.console_max_secs()));
                reply
            }
            Err(e) => error_reply("sign-in", &e, pages::message_page("Sign-in refused", &e.to_string())),
        }
    }

    async fn get(&self, ctx: &Ctx, segments: &[&str], query: &HashMap<String, String>) -> Reply {
        let flash = query.get("done").map(|d| Flash::Done(d.clone()));
        let kms = &*self.kms;
        let result: Result<Reply, (&'static str, KmsError)> = match segments {
            [] => pages::overview(kms, ctx, &self.tiers).await.map(|m| Reply::new("overview", page(m))),
            ["keystores"] => pages::keystores(kms, ctx, flash, None).await.map(|m| Reply::new("keystores", page(m))),
            ["keystores", id] => {
                pages::keystore(kms, ctx, id, flash, None).await.map(|m| Reply::new("keystore", page(m)))
            }
            ["keys", id] => pages::key(kms, ctx, id, flash, None).await.map(|m| Reply::new("key", page(m))),
            ["keys", id, "public.pem"] => {
                match kms.execute(&ctx.caller, kms::ReadPublicKey { key_id: (*id).to_owned(), key_version: 0 }).await {
                    Ok(public) => Ok(Reply::new(
                        "public-key",
                        Answer::Download {
                            content_type: "application/x-pem-file",
                            filename: format!("{id}-v{}.pem", public.key_version),
                            body: public.pem.into_bytes(),
                        },
                    )),
                    Err(e) => Err(("public-key", e)),
                }
            }
            ["audit"] => pages::audit(kms, ctx, query).await.map(|m| Reply::new("audit", page(m))),
            ["audit", "verify"] => pages::audit_verify(kms, ctx).await.map(|m| Reply::new("audit-verify", page(m))),
            ["operators"] => pages::operators(kms, ctx, flash).await.map(|m| Reply::new("operators", page(m))),
            _ => Ok(not_found("No such page.")),
        };
        result.unwrap_or_else(|(operation, e)| {
            let title = if e.code() == kms::Code::NotFound { "Not found" } else { "Refused" };
            error_reply(operation, &e, pages::error_page(ctx, title, &e))
        })
    }

    async fn post(&self, ctx: &Ctx, segments: &[&str], form: Form) -> Reply {
        let kms = &*self.kms;
        match segments {
            ["sign-out"] => {
                let token = ctx.token.clone();
                let _ = kms.execute(&ctx.caller, kms::CloseConsoleSession { token }).await;
                let mut reply = Reply::new("sign-out", Answer::SeeOther("/signed-out".to_owned()));
                reply.cookie = Some(cleared_cookie());
                reply
            }
            ["keystores"] => forms::create_keystore(kms, ctx, form).await,
            ["keystores", id, action] => forms::keystore_action(kms, ctx, id, action, form).await,
            ["keystores", id, "certificates", action] => forms::certificate_action(kms, ctx, id, action, form).await,
            ["keys", id, action] => forms::key_action(kms, ctx, id, action, form).await,
            ["operators", "revoke"] => forms::revoke_operator(kms, ctx, form).await,
            _ => not_found("No such form."),
        }
    }
}

fn page(markup: Markup) -> Answer {
    Answer::Page(StatusCode::OK, markup)
}

/// A page for a refused or failed operation, with the status of its code.
fn error_reply(operation: &'static str, e: &KmsError, markup: Markup) -> Reply {
    if let KmsError::Internal(source) = e {
        tracing::error!(error = %skm_runtime::daemon::error_chain(&**source), "internal error");
    }
    let code = crate::grpc::code(e.code());
    Reply::refusal(operation, crate::rest::http_status(code), skm_runtime::metrics::code_name(code), markup)
}
