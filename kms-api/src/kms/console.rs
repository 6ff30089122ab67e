//! The web console's sign-in: one-time codes minted for an operator on the
//! admin port (`skm console login`), and the sessions they open.
//!
//! A code and a session are each 32 random bytes, handed out once as
//! base64url and kept only as their SHA-256, so a lookup compares digests
//! (no timing leak of the token) and memory holds nothing a browser could
//! present. Both live in kms-api's memory: a restart signs every operator
//! out. A session carries the operator as the admin port authenticated
//! them when the code was minted (principal, role, certificate), so the
//! core checks the role and the certificate's revocation on every action
//! exactly as for the CLI; a revoked certificate also ends its sessions.

use std::collections::HashMap;
use std::sync::Mutex;

use skm_store::Store;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::caller::{FrontEnd, Operator, Who};
use super::operation::{Effect, Operation, Trail};
use super::{Kms, KmsError};

/// How long a sign-in code is valid, seconds.
pub const SIGN_IN_SECS: i64 = 60;
/// The most unused sign-in codes held at once.
pub const MAX_PENDING_SIGN_INS: usize = 64;
/// The most console sessions open at once.
pub const MAX_SESSIONS: usize = 256;

/// The console as configured: where it is and how long sessions last.
#[derive(Clone, Debug)]
pub struct ConsoleSettings {
    /// Its base URL (`https://host:port`), for the sign-in links.
    pub url: String,
    /// A session unused this long ends, seconds.
    pub idle_secs: i64,
    /// A session ends this long after sign-in whatever its use, seconds.
    pub max_secs: i64,
}

struct Pending {
    operator: Operator,
    expires_at: i64,
}

struct Session {
    operator: Operator,
    csrf: String,
    created_at: i64,
    last_seen: i64,
}

#[derive(Default)]
struct State {
    codes: HashMap<[u8; 32], Pending>,
    sessions: HashMap<[u8; 32], Session>,
}

/// The console's codes and sessions (empty, and refusing codes, when
/// kms-api serves no console).
#[derive(Default)]
pub(crate) struct ConsoleAuth {
    settings: Option<ConsoleSettings>,
    state: Mutex<State>,
}

impl std::fmt::Debug for ConsoleAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleAuth").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// An open session, as a page request sees it.
#[derive(Clone, Debug)]
pub struct ConsoleSession {
    /// Who signed in.
    pub operator: Operator,
    /// The session's CSRF token, in every form it renders.
    pub csrf: String,
    /// When it was opened, seconds since the epoch.
    pub created_at: i64,
}

impl ConsoleSession {
    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// An open session as the operators page lists it.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// The operator's principal.
    pub principal: String,
    /// Its role.
    pub role: skm_runtime::Role,
    /// SHA-256 of its certificate.
    pub cert_sha256: Option<String>,
    /// When it signed in.
    pub created_at: i64,
    /// Its last request.
    pub last_seen: i64,
}

fn digest(token: &str) -> [u8; 32] {
    skm_crypto::sha256(token.as_bytes())
}

fn new_token() -> Result<Zeroizing<String>, KmsError> {
    use base64::Engine as _;
    let bytes = Zeroizing::new(skm_crypto::random_array::<32>().map_err(super::internal)?);
    Ok(Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*bytes)))
}

impl ConsoleAuth {
    pub(crate) fn new(settings: ConsoleSettings) -> Self {
        Self { settings: Some(settings), state: Mutex::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn forget_expired(&self, state: &mut State, now: i64) {
        state.codes.retain(|_, p| p.expires_at > now);
        if let Some(s) = &self.settings {
            state.sessions.retain(|_, v| now - v.last_seen < s.idle_secs && now - v.created_at < s.max_secs);
        }
    }
}

impl<S: Store + Clone> Kms<S> {
    /// Serves a console at `settings.url`: sign-in codes can be minted.
    pub fn with_console(mut self, settings: ConsoleSettings) -> Self {
        self.console = ConsoleAuth::new(settings);
        self
    }

    /// A session's absolute lifetime, seconds (the cookie's `Max-Age`).
    pub fn console_max_secs(&self) -> i64 {
        self.console.settings.as_ref().map_or(0, |s| s.max_secs)
    }

    /// Takes a sign-in code: the operator it was minted for, once, within
    /// [`SIGN_IN_SECS`]; `None` for a code unknown, used or expired (the
    /// caller can't tell which).
    pub fn redeem_console_code(&self, code: &str) -> Option<Operator> {
        let now = self.now();
        let mut state = self.console.state();
        let pending = state.codes.remove(&digest(code))?;
        (pending.expires_at > now).then_some(pending.operator)
    }

    /// The open session of `token`, or `None` when there is none, it has
    /// timed out, or its operator's certificate has been revoked (which
    /// ends it). A hit counts as use.
    pub fn console_session(&self, token: &str) -> Option<ConsoleSession> {
        let now = self.now();
        let mut state = self.console.state();
        self.console.forget_expired(&mut state, now);
        let key = digest(token);
        let session = state.sessions.get_mut(&key)?;
        if self.revoked.is_revoked_certificate(&session.operator.facts) {
            tracing::warn!(
                operator = session.operator.principal,
                "console session ended: operator certificate revoked"
            );
            state.sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(ConsoleSession {
            operator: session.operator.clone(),
            csrf: session.csrf.clone(),
            created_at: session.created_at,
        })
    }
}

/// Mint a one-time console sign-in code for the calling operator.
#[derive(Debug)]
pub struct CreateConsoleSignIn;

/// A sign-in code just minted.
pub struct ConsoleSignIn {
    /// The console's sign-in page with the code.
    pub url: Zeroizing<String>,
    /// The code.
    pub code: Zeroizing<String>,
    /// When it expires, seconds since the epoch.
    pub expires_at: i64,
}

impl std::fmt::Debug for ConsoleSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSignIn").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

fn operator_of<'c>(trail: &Trail<'c>) -> Result<&'c Operator, KmsError> {
    match &trail.caller().who {
        Who::Operator(op) => Ok(op),
        _ => Err(KmsError::Forbidden("console sessions are for operators")),
    }
}

impl Operation for CreateConsoleSignIn {
    const NAME: &'static str = "CreateConsoleSignIn";
    // Both roles sign in (an auditor to a read-only console); revocation
    // is checked and the call audited like any operator read.
    const EFFECT: Effect = Effect::Read;
    type Output = ConsoleSignIn;

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<ConsoleSignIn, KmsError> {
        let operator = operator_of(trail)?;
        if trail.caller().via != FrontEnd::Grpc {
            return Err(KmsError::Forbidden("sign-in codes are made on the admin port (skm console login)"));
        }
        let Some(settings) = &kms.console.settings else {
            return Err(KmsError::FailedPrecondition(
                "kms-api serves no web console (set console_listen in its configuration)".to_owned(),
            ));
        };
        let now = kms.now();
        let mut state = kms.console.state();
        kms.console.forget_expired(&mut state, now);
        if state.codes.len() >= MAX_PENDING_SIGN_INS {
            return Err(KmsError::FailedPrecondition(format!(
                "{MAX_PENDING_SIGN_INS} unused sign-in codes are pending; try again within {SIGN_IN_SECS} s"
            )));
        }
        let code = new_token()?;
        let expires_at = now + SIGN_IN_SECS;
        state.codes.insert(digest(&code), Pending { operator: operator.clone(), expires_at });
        let url = Zeroizing::new(format!("{}/sign-in?code={}", settings.url, code.as_str()));
        Ok(ConsoleSignIn { url, code, expires_at })
    }
}

/// Open a console session for the operator whose sign-in code the browser
/// presented ([`Kms::redeem_console_code`]).
#[derive(Debug)]
pub struct OpenConsoleSession;

/// A session just opened: its cookie value (handed to the browser once)
/// and CSRF token.
pub struct OpenedSession {
    /// The session token (the cookie's value).
    pub token: Zeroizing<String>,
    /// The session.
    pub session: ConsoleSession,
}

impl std::fmt::Debug for OpenedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSession").field("operator", &self.session.operator.principal).finish_non_exhaustive()
    }
}

impl Operation for OpenConsoleSession {
    const NAME: &'static str = "ConsoleSignIn";
    const EFFECT: Effect = Effect::Read;
    type Output = OpenedSession;

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<OpenedSession, KmsError> {
        let operator = operator_of(trail)?;
        if trail.caller().via != FrontEnd::Console {
            return Err(KmsError::Forbidden("console sessions are opened by the console"));
        }
        let now = kms.now();
        let token = new_token()?;
        let csrf = new_token()?;
        let session = ConsoleSession { operator: operator.clone(), csrf: csrf.to_string(), created_at: now };
        let mut state = kms.console.state();
        kms.console.forget_expired(&mut state, now);
        if state.sessions.len() >= MAX_SESSIONS {
            return Err(KmsError::FailedPrecondition(format!(
                "{MAX_SESSIONS} console sessions are open; sign one out or wait for one to time out"
            )));
        }
        state.sessions.insert(
            digest(&token),
            Session { operator: operator.clone(), csrf: session.csrf.clone(), created_at: now, last_seen: now },
        );
        Ok(OpenedSession { token, session })
    }
}

/// End a console session (sign-out).
pub struct CloseConsoleSession {
    /// Its token.
    pub token: Zeroizing<String>,
}

impl std::fmt::Debug for CloseConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseConsoleSession").finish_non_exhaustive()
    }
}

impl Operation for CloseConsoleSession {
    const NAME: &'static str = "ConsoleSignOut";
    const EFFECT: Effect = Effect::Read;
    type Output = ();

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<(), KmsError> {
        kms.console.state().sessions.remove(&digest(&self.token));
        Ok(())
    }
}

/// The open console sessions and the revoked operator certificates (admins
/// only).
#[derive(Debug)]
pub struct ListOperators;

/// What the operators page shows.
#[derive(Debug)]
pub struct OperatorsView {
    /// Open console sessions, oldest first.
    pub sessions: Vec<SessionInfo>,
    /// SHA-256 of every revoked operator certificate, sorted.
    pub revoked: Vec<String>,
}

impl Operation for ListOperators {
    const NAME: &'static str = "ListOperators";
    const EFFECT: Effect = Effect::Read;
    type Output = OperatorsView;

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, trail: &mut Trail<'_>) -> Result<OperatorsView, KmsError> {
        // Who is signed in, with which certificate, is the admins' to see.
        if operator_of(trail)?.role != skm_runtime::Role::Admin {
            return Err(KmsError::Forbidden("the operators page needs the admin role"));
        }
        let now = kms.now();
        let mut sessions: Vec<SessionInfo> = {
            let mut state = kms.console.state();
            kms.console.forget_expired(&mut state, now);
            state
                .sessions
                .values()
                .map(|s| SessionInfo {
                    principal: s.operator.principal.clone(),
                    role: s.operator.role,
                    cert_sha256: s.operator.facts.cert_sha256(),
                    created_at: s.created_at,
                    last_seen: s.last_seen,
                })
                .collect()
        };
        sessions.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.principal.cmp(&b.principal)));
        Ok(OperatorsView { sessions, revoked: kms.revoked.list() })
    }
}

/// What the console's overview shows, as one audited read.
#[derive(Debug)]
pub struct ConsoleOverview;

/// The overview's figures.
#[derive(Debug)]
pub struct Overview {
    /// The active system key version.
    pub active_version: u32,
    /// The versions held, ascending.
    pub versions: Vec<u32>,
    /// The retired versions.
    pub retired_versions: Vec<u32>,
    /// The background re-seal.
    pub reseal: crate::reseal::ProgressReport,
    /// Keystores.
    pub keystores: usize,
    /// Keys and secrets.
    pub keys: usize,
}

impl Operation for ConsoleOverview {
    const NAME: &'static str = "ConsoleOverview";
    const EFFECT: Effect = Effect::Read;
    type Output = Overview;

    async fn run<S: Store + Clone>(self, kms: &Kms<S>, _trail: &mut Trail<'_>) -> Result<Overview, KmsError> {
        let keys = kms.records.system_keys();
        let ring = keys.current()?;
        let keystores = kms.records.keystores().await?;
        let mut count = 0;
        for ks in &keystores {
            count += kms.records.key_ids_in(&ks.id).await?.len();
        }
        Ok(Overview {
            active_version: ring.active_version(),
            versions: ring.versions().collect(),
            retired_versions: ring.retired_versions().collect(),
            reseal: keys.reseal().report(),
            keystores: keystores.len(),
            keys: count,
        })
    }
}
