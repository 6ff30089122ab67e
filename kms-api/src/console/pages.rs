//! The console's pages: maud templates (every interpolated string is
//! escaped) over the results of core operations. The words are the CLI's
//! and the API's: the same ids, field names, states and error messages.

use std::collections::HashMap;
use std::time::Duration;

use maud::{DOCTYPE, Markup, html};
use skm_runtime::Role;
use skm_store::Store;
use tonic::transport::Channel;

use super::Ctx;
use super::forms::Form;
use crate::access::Mode;
use crate::audit::{Event, Filter, Outcome};
use crate::kms::{self, Kms, KmsError};
use crate::model::{DELETION_DAYS, Key, KeyKind, KeyState, Keystore};

/// A page's failure: the operation that failed and why.
pub(crate) type PageError = (&'static str, KmsError);

/// The key types the create form offers (the CLI's names).
pub(crate) const KEY_TYPES: [&str; 16] = [
    "aes-256",
    "ed25519",
    "ecdsa-p256",
    "ecdsa-p384",
    "rsa-2048",
    "rsa-3072",
    "rsa-4096",
    "ml-dsa-44",
    "ml-dsa-65",
    "ml-dsa-87",
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
    "rsa-oaep-2048",
    "rsa-oaep-3072",
    "rsa-oaep-4096",
];

/// What the page says was just done.
#[derive(Clone, Debug)]
pub(crate) enum Flash {
    /// A change went through.
    Done(String),
}

/// A refused form: which form, the field the core's message names (when
/// it names one of the form's), the message and what was entered.
pub(crate) struct FormError {
    form: &'static str,
    message: String,
    values: Form,
}

impl FormError {
    pub(crate) fn new(form: &'static str, e: &KmsError, values: Form) -> Self {
        Self { form, message: e.to_string(), values }
    }

    /// The message, when it is about `field` of `form`.
    fn about(&self, form: &str, field: &str) -> Option<&str> {
        let m = self.message.as_str();
        let named = m.starts_with(field) && m[field.len()..].starts_with([':', ' ', '[', '.'])
            || m.starts_with(&format!("policy.{field}"))
            || (field == "name" && m.starts_with("a keystore named"))
            || (field == "name" && m.contains("already exists in"))
            || (field == "alias" && m.starts_with("the alias"));
        (self.form == form && named).then_some(m)
    }
}

/// The message of a form's error that names none of `fields`.
fn general_error<'e>(error: Option<&'e FormError>, form: &str, fields: &[&str]) -> Option<&'e str> {
    error.filter(|e| e.form == form && fields.iter().all(|f| e.about(form, f).is_none())).map(|e| e.message.as_str())
}

/// The value to show in a field: what was entered when its form was
/// refused, else `default`.
fn value<'a>(error: Option<&'a FormError>, form: &str, field: &str, default: &'a str) -> &'a str {
    match error {
        Some(e) if e.form == form => e.values.get(field),
        _ => default,
    }
}

/// A time as the audit filters take it: seconds since the epoch, or
/// `YYYY-MM-DD[ HH:MM[:SS]]` (or with `T`) in UTC.
pub(crate) fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim().trim_end_matches(" UTC");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let (date, clock) = text.split_once([' ', 'T']).unwrap_or((text, "00:00"));
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (c.next()??, c.next()??, c.next().unwrap_or(Some(0))?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn time(secs: i64) -> String {
    if secs <= 0 {
        return "—".to_owned();
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn layout(ctx: Option<&Ctx>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · SKM console" }
                link rel="stylesheet" href="/static/console.css";
                link rel="icon" type="image/svg+xml" href="/static/icon.svg";
            }
            body {
                header {
                    a.brand href="/" { "SKM" }
                    @if let Some(ctx) = ctx {
                        nav aria-label="Main" {
                            a href="/" { "Overview" }
                            a href="/keystores" { "Keystores" }
                            a href="/audit" { "Audit" }
                            @if ctx.can_write() { a href="/operators" { "Operators" } }
                        }
                        form.signout method="post" action="/sign-out" {
                            span #whoami { (ctx.session.operator.principal) " (" (role_name(ctx.session.operator.role)) ")" }
                            (csrf(ctx))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Auditor => "auditor",
    }
}

fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.session.csrf); }
}

fn flash(flash: Option<&Flash>) -> Markup {
    html! {
        @if let Some(Flash::Done(what)) = flash {
            p.flash role="status" { (what) }
        }
    }
}

/// A field's error, next to it.
fn field_error(error: Option<&FormError>, form: &str, field: &str) -> Markup {
    html! {
        @if let Some(message) = error.and_then(|e| e.about(form, field)) {
            span.error id={ (form) "-" (field) "-error" } role="alert" { (message) }
        }
    }
}

fn form_error(error: Option<&FormError>, form: &str, fields: &[&str]) -> Markup {
    html! {
        @if let Some(message) = general_error(error, form, fields) {
            p.error id={ (form) "-error" } role="alert" { (message) }
        }
    }
}

/// A labelled input `name` of `form` (id `{form}-{name}`): the value
/// entered when the form was refused (never a password's), else
/// `default`, and the core's message about it beside it.
fn input(error: Option<&FormError>, form: &str, name: &str, label: &str, kind: &str, default: &str) -> Markup {
    let id = format!("{form}-{name}");
    let shown = if kind == "password" { "" } else { value(error, form, name, default) };
    html! {
        label for=(id) { (label) }
        input id=(id) type=(kind) name=(name) value=(shown) autocomplete=[(kind == "password").then_some("new-password")];
        (field_error(error, form, name))
    }
}

/// A secret's value fields of `form`: a text area (never filled in again)
/// or a file, and the core's message about the value.
fn secret_value(error: Option<&FormError>, form: &str, label: &str) -> Markup {
    html! {
        label for={ (form) "-value" } { (label) }
        textarea id={ (form) "-value" } name="value" rows="3" autocomplete="off" spellcheck="false" {}
        label for={ (form) "-file" } { "…or upload it from a file (byte for byte)" }
        input id={ (form) "-file" } type="file" name="value_file";
        (field_error(error, form, "value"))
    }
}

/// A page with a title and a sentence, outside a session.
pub(crate) fn message_page(title: &str, text: &str) -> Markup {
    layout(None, title, html! { p { (text) } })
}

/// The sign-in page of a one-time code: a button that posts it.
pub(crate) fn sign_in(code: &str, error: Option<&str>) -> Markup {
    layout(
        None,
        "Sign in",
        html! {
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            @if code.is_empty() {
                p { "Run " code { "skm console login" } " with your operator certificate and open the link it prints." }
            } @else {
                form method="post" action="/sign-in" {
                    input type="hidden" name="code" value=(code);
                    p { "This one-time link signs you in as the operator who ran " code { "skm console login" } "." }
                    button #sign-in type="submit" autofocus { "Sign in" }
                }
            }
        },
    )
}

/// After sign-out, or for a browser without a session.
pub(crate) fn signed_out() -> Markup {
    layout(
        None,
        "Signed out",
        html! {
            p { "You are not signed in. Run " code { "skm console login" } " with your operator certificate and open the link it prints." }
        },
    )
}

/// A refused or failed operation, inside the session's layout.
pub(crate) fn error_page(ctx: &Ctx, title: &str, e: &KmsError) -> Markup {
    layout(
        Some(ctx),
        title,
        html! {
            p.error role="alert" { (e.code().name()) ": " (e) }
            p { a href="/" { "Back to the overview" } }
        },
    )
}

/// root-keyd's and system-keyd's health as kms-api sees it, asked over
/// kms-api's own mutual-TLS channels.
#[derive(Clone, Debug)]
pub(crate) struct TierProbe {
    pub(crate) root: Channel,
    pub(crate) system: Channel,
}

impl TierProbe {
    async fn serving(channel: &Channel) -> Option<bool> {
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
        match tokio::time::timeout(Duration::from_secs(2), client.check(request)).await {
            Ok(Ok(r)) => {
                Some(r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
            }
            _ => None,
        }
    }
}

fn health_cell(serving: Option<bool>, up: &str, down: &str) -> Markup {
    html! {
        @match serving {
            Some(true) => td.ok { (up) },
            Some(false) => td.bad { (down) },
            None => td.bad { "unreachable from kms-api" },
        }
    }
}

pub(crate) async fn overview<S: Store + Clone>(
    kms: &Kms<S>,
    ctx: &Ctx,
    tiers: &TierProbe,
) -> Result<Markup, PageError> {
    let o = kms.execute(&ctx.caller, kms::ConsoleOverview).await.map_err(|e| ("ConsoleOverview", e))?;
    let (root, system) = tokio::join!(TierProbe::serving(&tiers.root), TierProbe::serving(&tiers.system));
    let audit = kms.audit();
    let stats = audit.stats();
    let list = |versions: &[u32]| versions.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ");
    Ok(layout(
        Some(ctx),
        "Overview",
        html! {
            section {
                h2 { "Tiers" }
                table #tiers {
                    thead { tr { th scope="col" { "Tier" } th scope="col" { "State" } } }
                    tbody {
                        tr { th scope="row" { "kms-api" } (health_cell(Some(audit.healthy()), "serving", "not serving (audit log)")) }
                        tr { th scope="row" { "system-keyd" } (health_cell(system, "serving", "not serving")) }
                        tr { th scope="row" { "root-keyd" } (health_cell(root, "serving (unsealed)", "not serving (sealed or starting)")) }
                    }
                }
            }
            section {
                h2 { "System key" }
                p #system-key {
                    "Version " strong { (o.active_version) } " active; held: " (list(&o.versions))
                    @if !o.retired_versions.is_empty() { "; retired: " (list(&o.retired_versions)) }
                    "."
                }
                p {
                    @if o.reseal.done && o.reseal.target == o.active_version {
                        "Every record is sealed under the active version."
                    } @else if o.reseal.target == 0 {
                        "The re-seal check has not started yet."
                    } @else {
                        "Re-seal to v" (o.reseal.target) " under way: " (o.reseal.scanned) " records scanned, "
                        (o.reseal.resealed) " re-sealed (" code { "skm system status" } " counts records per version)."
                    }
                }
            }
            section {
                h2 { "Audit log" }
                p #audit-health {
                    @if audit.healthy() { "Writable; tail anchored in the store. " } @else { strong.bad { "Not writable. " } }
                    (stats.entries) " entries written since start. "
                    a href="/audit/verify" { "Verify the chain" }
                }
            }
            section {
                h2 { "Contents" }
                p #counts { (o.keystores) " keystores, " (o.keys) " keys and secrets. " a href="/keystores" { "Keystores" } }
            }
        },
    ))
}

fn policy_fields(ctx: &Ctx, form: &str, ks: Option<&Keystore>, error: Option<&FormError>) -> Markup {
    let input = ks.map(|k| k.policy.to_input()).unwrap_or_default();
    let ips = input.allow_ips.join("\n");
    let macs = input.allow_macs.join("\n");
    let refused = error.is_some_and(|e| e.form == form);
    let checked =
        |field: &str, current: bool| if refused { error.is_some_and(|e| e.values.has(field)) } else { current };
    let mode = value(error, form, "mode", if input.mode == Mode::Any { "any" } else { "all" }).to_owned();
    let disabled = !ctx.can_write();
    html! {
        label for={ (form) "-allow_ips" } { "Allowed IPv4 addresses and CIDRs (one per line)" }
        textarea id={ (form) "-allow_ips" } name="allow_ips" rows="3" disabled[disabled] { (value(error, form, "allow_ips", &ips)) }
        (field_error(error, form, "allow_ips"))
        label for={ (form) "-allow_macs" } { "Allowed MAC addresses (one per line)" }
        textarea id={ (form) "-allow_macs" } name="allow_macs" rows="2" disabled[disabled] { (value(error, form, "allow_macs", &macs)) }
        (field_error(error, form, "allow_macs"))
        div.check {
            input type="checkbox" id={ (form) "-allow_asserted_mac" } name="allow_asserted_mac" value="on"
                checked[checked("allow_asserted_mac", input.allow_asserted_mac)] disabled[disabled];
            label for={ (form) "-allow_asserted_mac" } { "Accept MAC addresses the client asserts (x-skm-client-mac)" }
        }
        div.check {
            input type="checkbox" id={ (form) "-require_cert" } name="require_cert" value="on"
                checked[checked("require_cert", input.require_cert)] disabled[disabled];
            label for={ (form) "-require_cert" } { "Require a client certificate of this keystore" }
        }
        label for={ (form) "-mode" } { "Mode" }
        select id={ (form) "-mode" } name="mode" disabled[disabled] {
            option value="all" selected[mode == "all"] { "all: every enabled check must pass" }
            option value="any" selected[mode == "any"] { "any: one enabled check suffices" }
        }
        (field_error(error, form, "mode"))
    }
}

pub(crate) async fn keystores<S: Store + Clone>(
    kms: &Kms<S>,
    ctx: &Ctx,
    done: Option<Flash>,
    error: Option<&FormError>,
) -> Result<Markup, PageError> {
    let keystores = kms.execute(&ctx.caller, kms::ListKeystores).await.map_err(|e| ("ListKeystores", e))?;
    const F: &str = "create-keystore";
    Ok(layout(
        Some(ctx),
        "Keystores",
        html! {
            (flash(done.as_ref()))
            table #keystores {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Alias" } th scope="col" { "Policy" } th scope="col" { "Created" } } }
                tbody {
                    @for ks in &keystores {
                        tr {
                            td { a href={ "/keystores/" (ks.id) } { (ks.name) } }
                            td { code { (ks.id) } }
                            td { (ks.alias.as_deref().unwrap_or("—")) }
                            td { (policy_summary(ks)) }
                            td { (time(ks.created_at)) }
                        }
                    }
                }
            }
            @if keystores.is_empty() { p { "No keystores yet." } }
            @if ctx.can_write() {
                section {
                    h2 { "Create a keystore" }
                    form #create-keystore method="post" action="/keystores" {
                        (csrf(ctx))
                        (form_error(error, F, &["name", "alias", "allow_ips", "allow_macs", "mode"]))
                        (input(error, F, "name", "Name", "text", ""))
                        (input(error, F, "alias", "Alias (optional)", "text", ""))
                        (policy_fields(ctx, F, None, error))
                        button type="submit" { "Create keystore" }
                    }
                }
            }
        },
    ))
}

fn policy_summary(ks: &Keystore) -> String {
    let input = ks.policy.to_input();
    let mut parts = Vec::new();
    if !input.allow_ips.is_empty() {
        parts.push(format!("IPv4 {}", input.allow_ips.join(", ")));
    }
    if !input.allow_macs.is_empty() {
        parts.push(format!("MAC {}", input.allow_macs.join(", ")));
    }
    if input.require_cert {
        parts.push("certificate".to_owned());
    }
    if parts.is_empty() {
        return "no checks enabled".to_owned();
    }
    let mode = if input.mode == Mode::Any { "any of" } else { "all of" };
    format!("{mode}: {}", parts.join("; "))
}

fn state_name(state: &KeyState) -> String {
    match state {
        KeyState::Enabled => "enabled".to_owned(),
        KeyState::Disabled => "disabled".to_owned(),
        KeyState::PendingImport => "pending import".to_owned(),
        KeyState::PendingDeletion { deletion_at } => format!("pending deletion ({})", time(*deletion_at)),
    }
}

pub(crate) async fn keystore<S: Store + Clone>(
    kms: &Kms<S>,
    ctx: &Ctx,
    id: &str,
    done: Option<Flash>,
    error: Option<&FormError>,
) -> Result<Markup, PageError> {
    let ks = kms
        .execute(&ctx.caller, kms::GetKeystore { keystore_id: id.to_owned() })
        .await
        .map_err(|e| ("GetKeystore", e))?;
    let keys =
        kms.execute(&ctx.caller, kms::ListKeys { keystore_id: id.to_owned() }).await.map_err(|e| ("ListKeys", e))?;
    let write = ctx.can_write();
    let alias = ks.alias.clone().unwrap_or_default();
    Ok(layout(
        Some(ctx),
        &format!("Keystore {}", ks.name),
        html! {
            (flash(done.as_ref()))
            p { "Id " code #keystore-id { (ks.id) } " · created " (time(ks.created_at)) }
            section {
                h2 { "Keys and secrets" }
                table #keys {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "State" }
                        th scope="col" { "Version" } th scope="col" { "Next rotation" } th scope="col" { "Last use" } th scope="col" { "Id" }
                    } }
                    tbody {
                        @for key in &keys {
                            tr {
                                td { a href={ "/keys/" (key.id) } { (key.name) } }
                                td { (key.kind().name()) }
                                td { (state_name(&key.state)) }
                                td { (key.material.newest_version()) }
                                td { (time(key.next_rotation_at)) }
                                td { (time(key.last_used())) }
                                td { code { (key.id) } }
                            }
                        }
                    }
                }
                @if keys.is_empty() { p { "No keys or secrets yet." } }
            }
            @if write {
                section.columns {
                    form #create-key method="post" action={ "/keystores/" (ks.id) "/keys" } {
                        h2 { "Create a key" }
                        (csrf(ctx))
                        (form_error(error, "create-key", &["name", "key_type", "rotation_period_days"]))
                        (input(error, "create-key", "name", "Name", "text", ""))
                        label for="create-key-type" { "Type" }
                        select #create-key-type name="key_type" {
                            @for t in KEY_TYPES {
                                option value=(t) selected[value(error, "create-key", "key_type", "aes-256") == t] { (t) }
                            }
                        }
                        (field_error(error, "create-key", "key_type"))
                        (input(error, "create-key", "rotation_period_days", "Automatic rotation every (days, 0 = off)", "number", "0"))
                        button type="submit" { "Create key" }
                    }
                    form #create-secret method="post" enctype="multipart/form-data" action={ "/keystores/" (ks.id) "/secrets" } {
                        h2 { "Create a secret" }
                        (csrf(ctx))
                        (form_error(error, "create-secret", &["name", "value", "max_versions"]))
                        (input(error, "create-secret", "name", "Name", "text", ""))
                        (secret_value(error, "create-secret", "Value (write-only: never shown again)"))
                        (input(error, "create-secret", "max_versions", "Versions kept (0 = default)", "number", "0"))
                        button type="submit" { "Create secret" }
                    }
                }
            }
            section {
                h2 { "Access policy" }
                form #policy method="post" action={ "/keystores/" (ks.id) "/policy" } {
                    (csrf(ctx))
                    (form_error(error, "policy", &["alias", "allow_ips", "allow_macs", "mode"]))
                    label for="policy-alias" { "Alias" }
                    input #policy-alias type="text" name="alias" value=(value(error, "policy", "alias", &alias)) disabled[!write];
                    (field_error(error, "policy", "alias"))
                    (policy_fields(ctx, "policy", Some(&ks), error))
                    @if write { button type="submit" { "Save policy" } }
                }
            }
            section {
                h2 { "Client certificates" }
                table #certificates {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "SHA-256" } th scope="col" { "Origin" } th scope="col" { "Expires" } th scope="col" { "State" } @if write { th scope="col" { "" } } } }
                    tbody {
                        @for cert in &ks.certs {
                            tr {
                                td { (cert.name) }
                                td { code { (cert.sha256) } }
                                td { @if cert.issued { "issued" } @else { "registered" } }
                                td { (time(cert.not_after)) }
                                td { @if cert.revoked { "revoked" } @else { "valid" } }
                                @if write {
                                    td {
                                        @if !cert.revoked {
                                            form method="post" action={ "/keystores/" (ks.id) "/certificates/revoke" } {
                                                (csrf(ctx))
                                                input type="hidden" name="certificate" value=(cert.sha256);
                                                button.danger type="submit" aria-label={ "Revoke " (cert.name) } { "Revoke" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                (form_error(error, "revoke-cert", &[]))
                @if write {
                    div.columns {
                        form #issue-cert method="post" action={ "/keystores/" (ks.id) "/certificates/issue" } {
                            h3 { "Issue a client certificate (PKCS#12)" }
                            (csrf(ctx))
                            (form_error(error, "issue-cert", &["name", "days", "password"]))
                            (input(error, "issue-cert", "name", "Name", "text", ""))
                            (input(error, "issue-cert", "days", "Lifetime (days, 0 = 365)", "number", "0"))
                            (input(error, "issue-cert", "password", "PKCS#12 password", "password", ""))
                            button type="submit" { "Issue and download" }
                        }
                        form #register-cert method="post" enctype="multipart/form-data" action={ "/keystores/" (ks.id) "/certificates/register" } {
                            h3 { "Register an external certificate" }
                            (csrf(ctx))
                            (form_error(error, "register-cert", &["name", "sha256", "pem"]))
                            (input(error, "register-cert", "name", "Name", "text", ""))
                            (input(error, "register-cert", "sha256", "SHA-256 fingerprint", "text", ""))
                            label for="register-cert-pem" { "…or the certificate (PEM)" }
                            textarea #register-cert-pem name="pem" rows="3" { (value(error, "register-cert", "pem", "")) }
                            label for="register-cert-file" { "…or upload the PEM file" }
                            input #register-cert-file type="file" name="pem_file" accept=".pem,.crt,.cer";
                            (field_error(error, "register-cert", "pem"))
                            button type="submit" { "Register" }
                        }
                    }
                }
            }
            @if write {
                section {
                    h2 { "Delete this keystore" }
                    form #delete-keystore method="post" action={ "/keystores/" (ks.id) "/delete" } {
                        (csrf(ctx))
                        (form_error(error, "delete-keystore", &["confirm"]))
                        p { "Only a keystore without keys or secrets can be deleted." }
                        (input(error, "delete-keystore", "confirm", "Type the keystore's name to confirm", "text", ""))
                        button.danger type="submit" { "Delete keystore" }
                    }
                }
            }
            section {
                h2 { "From the CLI" }
                pre { code { "skm keystore show " (ks.id) "\nskm key list " (ks.id) } }
            }
        },
    ))
}

/// A CLI line that uses the key (the link from each key to the CLI).
fn cli_snippet(key: &Key) -> String {
    let id = key.id;
    match key.kind() {
        KeyKind::Aes256 => format!("printf 'hello' | skm encrypt {id} | skm decrypt {id}"),
        KeyKind::Secret => format!("skm secret get {id}"),
        KeyKind::Asymmetric(_) => format!("printf 'hello' | skm sign {id} > sig.b64\nskm public-key {id}"),
        KeyKind::Hmac(_) => format!("printf 'hello' | skm mac {id}"),
        KeyKind::RsaOaep(_) => format!("skm public-key {id} > {id}.pem"),
    }
}

pub(crate) async fn key<S: Store + Clone>(
    kms: &Kms<S>,
    ctx: &Ctx,
    id: &str,
    done: Option<Flash>,
    error: Option<&FormError>,
) -> Result<Markup, PageError> {
    let key =
        kms.execute(&ctx.caller, kms::DescribeKey { key_id: id.to_owned() }).await.map_err(|e| ("DescribeKey", e))?;
    let write = ctx.can_write();
    let kind = key.kind();
    let asymmetric = matches!(kind, KeyKind::Asymmetric(_) | KeyKind::RsaOaep(_));
    let action = |name: &str| format!("/keys/{}/{name}", key.id);
    let deletion_days = format!("{}–{}", DELETION_DAYS.start(), DELETION_DAYS.end());
    Ok(layout(
        Some(ctx),
        &format!("{} {}", if kind == KeyKind::Secret { "Secret" } else { "Key" }, key.name),
        html! {
            (flash(done.as_ref()))
            dl.facts {
                dt { "Id" } dd { code #key-id { (key.id) } }
                dt { "Keystore" } dd { a href={ "/keystores/" (key.keystore_id) } { code { (key.keystore_id) } } }
                dt { "Type" } dd #key-type { (kind.name()) }
                dt { "State" } dd #key-state { (state_name(&key.state)) }
                dt { "Origin" } dd { (key.origin.name()) }
                dt { "Current version" } dd #key-version { (key.material.newest_version()) }
                @if kind != KeyKind::Secret {
                    dt { "Rotation" } dd { @if key.rotation_period_days == 0 { "manual only" } @else { "every " (key.rotation_period_days) " days; next " (time(key.next_rotation_at)) } }
                }
                dt { "Created" } dd { (time(key.created_at)) }
                dt { "Last use" } dd { (time(key.last_used())) }
            }
            h2 { "Versions" }
            table #versions {
                thead { tr { th scope="col" { "Version" } th scope="col" { "Created" } } }
                tbody { @for (v, at) in key.material.version_infos() { tr { td { (v) } td { (time(at)) } } } }
            }
            @if asymmetric {
                p { a #public-key href={ "/keys/" (key.id) "/public.pem" } download { "Download the public key (PEM)" } }
            }
            @if write {
                h2 { "Actions" }
                (form_error(error, "actions", &[]))
                div.actions {
                    @if kind != KeyKind::Secret && key.origin == crate::model::KeyOrigin::Skm {
                        form method="post" action=(action("rotate")) { (csrf(ctx)) button #rotate type="submit" { "Rotate now" } }
                    }
                    @match key.state {
                        KeyState::Enabled => form method="post" action=(action("disable")) { (csrf(ctx)) button #disable type="submit" { "Disable" } },
                        KeyState::Disabled => form method="post" action=(action("enable")) { (csrf(ctx)) button #enable type="submit" { "Enable" } },
                        KeyState::PendingDeletion { .. } => form method="post" action=(action("cancel-deletion")) { (csrf(ctx)) button #cancel-deletion type="submit" { "Cancel deletion" } },
                        KeyState::PendingImport => {},
                    }
                }
                @if kind == KeyKind::Secret {
                    form #secret method="post" enctype="multipart/form-data" action=(action("secret")) {
                        h3 { "Store a new version" }
                        (csrf(ctx))
                        (form_error(error, "secret", &["value"]))
                        (secret_value(error, "secret", "Value (write-only)"))
                        button type="submit" { "Store version" }
                    }
                } @else {
                    form #rotation method="post" action=(action("rotation")) {
                        h3 { "Automatic rotation" }
                        (csrf(ctx))
                        (form_error(error, "rotation", &["rotation_period_days"]))
                        (input(error, "rotation", "rotation_period_days", "Every (days, 0 = off)", "number", &key.rotation_period_days.to_string()))
                        button type="submit" { "Save" }
                    }
                }
                @if !matches!(key.state, KeyState::PendingDeletion { .. }) {
                    form #schedule-deletion method="post" action=(action("schedule-deletion")) {
                        h3 { "Schedule deletion" }
                        (csrf(ctx))
                        (form_error(error, "schedule-deletion", &["confirm", "pending_days"]))
                        (input(error, "schedule-deletion", "pending_days", &format!("Waiting period (days, {deletion_days})"), "number", "30"))
                        (input(error, "schedule-deletion", "confirm", "Type the key's name to confirm", "text", ""))
                        button.danger type="submit" { "Schedule deletion" }
                    }
                }
            }
            h2 { "From the CLI" }
            pre #cli { code { "skm key show " (key.id) "\n" (cli_snippet(&key)) } }
        },
    ))
}

/// The audit filters the page takes, by query parameter.
const AUDIT_FILTERS: [(&str, &str); 7] = [
    ("keystore", "Keystore id"),
    ("key", "Key id"),
    ("operation", "Operation"),
    ("result", "Result (allowed, denied, failed, intent)"),
    ("operator", "Operator"),
    ("since", "From (YYYY-MM-DD [HH:MM] UTC)"),
    ("until", "Until (YYYY-MM-DD [HH:MM] UTC)"),
];

/// Entries a page shows.
const AUDIT_PAGE: u32 = 50;

fn filter_from(query: &HashMap<String, String>) -> Result<Filter, KmsError> {
    let text = |name: &str| query.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let secs = |name: &str| -> Result<Option<i64>, KmsError> {
        text(name)
            .map(|v| {
                parse_time(&v).ok_or_else(|| {
                    KmsError::InvalidArgument(format!(
                        "{name}: {v:?} is not a time (YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] UTC, or seconds since the epoch)"
                    ))
                })
            })
            .transpose()
    };
    if let Some(r) = text("result")
        && !["allowed", "denied", "failed", "intent"].contains(&r.as_str())
    {
        return Err(KmsError::InvalidArgument(format!("result: {r:?} is not allowed, denied, failed or intent")));
    }
    Ok(Filter {
        keystore_id: text("keystore"),
        key_id: text("key"),
        operation: text("operation"),
        result: text("result"),
        operator: text("operator"),
        since: secs("since")?,
        until: secs("until")?,
        limit: None,
    })
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Intent => "intent".to_owned(),
        Outcome::Allowed => "allowed".to_owned(),
        Outcome::Denied(why) => format!("denied: {why}"),
        Outcome::Failed(code) => format!("failed: {code}"),
    }
}

fn who(event: &Event) -> String {
    let c = &event.caller;
    c.operator.clone().or_else(|| c.system.clone()).unwrap_or_else(|| {
        let mut parts = Vec::new();
        if let Some(ip) = &c.ip {
            parts.push(ip.clone());
        }
        if let Some(sha) = &c.cert_sha256 {
            parts.push(format!("cert {}", &sha[..sha.len().min(12)]));
        }
        if parts.is_empty() { "—".to_owned() } else { parts.join(", ") }
    })
}

pub(crate) async fn audit<S: Store + Clone>(
    kms: &Kms<S>,
    ctx: &Ctx,
    query: &HashMap<String, String>,
) -> Result<Markup, PageError> {
    let filter = filter_from(query).map_err(|e| ("ListAudit", e))?;
    let token = query.get("page").cloned().unwrap_or_default();
    let page = kms::ListAuditPage { token, size: AUDIT_PAGE };
    let listed =
        kms.execute(&ctx.caller, kms::ListAudit { filter, page: Some(page) }).await.map_err(|e| ("ListAudit", e))?;
    let next = listed.next_token.map(|token| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (name, _) in AUDIT_FILTERS {
            if let Some(v) = query.get(name).filter(|v| !v.is_empty()) {
                q.append_pair(name, v);
            }
        }
        q.append_pair("page", &token);
        format!("/audit?{}", q.finish())
    });
    Ok(layout(
        Some(ctx),
        "Audit",
        html! {
            form #audit-filter method="get" action="/audit" {
                div.filters {
                    @for (name, label) in AUDIT_FILTERS {
                        div {
                            label for={ "audit-" (name) } { (label) }
                            input id={ "audit-" (name) } type="text" name=(name) value=(query.get(name).map_or("", String::as_str));
                        }
                    }
                }
                button type="submit" { "Filter" }
                " "
                a href="/audit/verify" { "Verify the chain" }
            }
            p { "Oldest first, " (AUDIT_PAGE) " entries a page." }
            table #audit {
                thead { tr {
                    th scope="col" { "Seq" } th scope="col" { "Time" } th scope="col" { "Operation" } th scope="col" { "Via" }
                    th scope="col" { "Who" } th scope="col" { "Keystore" } th scope="col" { "Key" } th scope="col" { "Version" } th scope="col" { "Result" }
                } }
                tbody {
                    @for (seq, e) in &listed.entries {
                        tr {
                            td { (seq) }
                            td { (time(e.time)) }
                            td { (e.operation) }
                            td { (e.front_end.as_deref().unwrap_or("grpc")) }
                            td { (who(e)) }
                            td { code { (e.keystore_id.as_deref().unwrap_or("")) } }
                            td { code { (e.key_id.as_deref().unwrap_or("")) } }
                            td { (e.key_version.map(|v| v.to_string()).unwrap_or_default()) }
                            td { (outcome_text(&e.result)) }
                        }
                    }
                }
            }
            @if listed.entries.is_empty() { p { "No entries match." } }
            @if let Some(next) = next { p { a #next-page href=(next) { "Next page" } } }
        },
    ))
}

pub(crate) async fn audit_verify<S: Store + Clone>(kms: &Kms<S>, ctx: &Ctx) -> Result<Markup, PageError> {
    let report = kms.execute(&ctx.caller, kms::VerifyAudit).await.map_err(|e| ("VerifyAudit", e))?;
    Ok(layout(
        Some(ctx),
        "Audit chain",
        html! {
            @match &report.first_broken {
                None => p #verify-result.ok { "intact: " (report.entries) " entries verified (sequence, hash chain, MAC, tail anchor)." },
                Some(b) => p #verify-result.bad {
                    "BROKEN at line " (b.line) @if let Some(seq) = b.seq { " (seq " (seq) ")" } ": " (format!("{:?}", b.reason))
                    "; " (report.entries) " entries intact before it."
                },
            }
            @for (lost, seq) in &report.acknowledged {
                p { "Acknowledged loss of entries " (lost.first_seq) "–" (lost.last_seq) " (entry " (seq) ")." }
            }
            p { a href="/audit" { "Back to the audit log" } }
        },
    ))
}

pub(crate) async fn operators<S: Store + Clone>(
    kms: &Kms<S>,
    ctx: &Ctx,
    done: Option<Flash>,
) -> Result<Markup, PageError> {
    operators_with(kms, ctx, done, None).await
}

pub(crate) async fn operators_with<S: Store + Clone>(
    kms: &Kms<S>,
    ctx: &Ctx,
    done: Option<Flash>,
    error: Option<&FormError>,
) -> Result<Markup, PageError> {
    let view = kms.execute(&ctx.caller, kms::ListOperators).await.map_err(|e| ("ListOperators", e))?;
    let write = ctx.can_write();
    Ok(layout(
        Some(ctx),
        "Operators",
        html! {
            (flash(done.as_ref()))
            p { "Operators sign in with their certificates (" code { "skm pki add-operator" } "); kms-api lists the ones with a console session open and the revoked ones." }
            h2 { "Console sessions" }
            table #sessions {
                thead { tr { th scope="col" { "Operator" } th scope="col" { "Role" } th scope="col" { "Certificate SHA-256" } th scope="col" { "Signed in" } th scope="col" { "Last request" } @if write { th scope="col" { "" } } } }
                tbody {
                    @for s in &view.sessions {
                        tr {
                            td { (s.principal) }
                            td { (role_name(s.role)) }
                            td { code { (s.cert_sha256.as_deref().unwrap_or("")) } }
                            td { (time(s.created_at)) }
                            td { (time(s.last_seen)) }
                            @if write {
                                td {
                                    @if let Some(sha) = &s.cert_sha256 {
                                        form method="post" action="/operators/revoke" {
                                            (csrf(ctx))
                                            input type="hidden" name="sha256" value=(sha);
                                            button.danger type="submit" aria-label={ "Revoke " (s.principal) } { "Revoke certificate" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Revoked operator certificates" }
            ul #revoked { @for sha in &view.revoked { li { code { (sha) } } } }
            @if view.revoked.is_empty() { p { "None." } }
            @if write {
                form #revoke-operator method="post" action="/operators/revoke" {
                    h3 { "Revoke an operator certificate" }
                    (csrf(ctx))
                    (form_error(error, "revoke-operator", &["sha256"]))
                    (input(error, "revoke-operator", "sha256", "SHA-256 of the certificate", "text", ""))
                    button.danger type="submit" { "Revoke" }
                    p { "kms-api refuses it from now on; " code { "skm pki revoke-operator" } " also tells root-keyd and system-keyd." }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back_as_written() {
        for secs in [1, 86_399, 951_782_400, 1_796_233_003, 4_102_444_800] {
            let shown = time(secs);
            assert_eq!(parse_time(&shown), Some(secs), "{shown}");
        }
        assert_eq!(time(1_796_233_003), "2026-12-02 17:36:43 UTC");
        assert_eq!(parse_time("2026-12-02"), Some(1_796_169_600));
        assert_eq!(parse_time("2026-12-02T17:36"), Some(1_796_233_003 - 43));
        assert_eq!(parse_time("1796233003"), Some(1_796_233_003));
        for bad in ["", "yesterday", "2026-13-01", "2026-12-02 24:00", "2026-12", "12:00"] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }
}
