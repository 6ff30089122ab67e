//! The console's forms: each POST is read into one typed core request,
//! run as the signed-in operator, and answered with a redirect to the page
//! it changed (with what was done) or that page again with the core's
//! message beside the field it names.

use std::collections::HashMap;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use skm_store::Store;
use zeroize::Zeroizing;

use super::pages::{self, FormError};
use super::{Answer, Ctx, Reply, error_reply, not_found};
use crate::access::{Mode, PolicyInput};
use crate::kms::{self, Code, Kms, KmsError};
use crate::model::{KeyKind, KeyOrigin};

/// A form body (`application/x-www-form-urlencoded`): each field's first
/// value, kept in zeroizing strings (a form may carry a secret value or a
/// PKCS#12 password).
#[derive(Clone, Default)]
pub(crate) struct Form(HashMap<String, Zeroizing<String>>, HashMap<String, Zeroizing<Vec<u8>>>);

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys().chain(self.1.keys())).finish()
    }
}

/// The boundary of a `multipart/form-data` content type.
pub(crate) fn multipart_boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (name, value) = p.trim().split_once('=')?;
        name.eq_ignore_ascii_case("boundary").then(|| value.trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A part's field name and, for a file, its file name, from its
/// `Content-Disposition: form-data; name="…"; filename="…"`.
fn disposition(head: &str) -> Option<(String, bool)> {
    let line = head.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    let param = |key: &str| {
        line.split(';').find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    Some((param("name")?, param("filename").is_some()))
}

/// Fields whose values a page never shows again.
const SECRET_FIELDS: [&str; 3] = ["value", "password", "csrf"];

impl Form {
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        let mut fields = HashMap::new();
        for (name, value) in form_urlencoded::parse(bytes) {
            fields.entry(name.into_owned()).or_insert_with(|| Zeroizing::new(value.into_owned()));
        }
        Self(fields, HashMap::new())
    }

    /// A `multipart/form-data` body (a form with a file field): text
    /// fields as strings, files as bytes; `None` when it is not well
    /// formed.
    pub(crate) fn parse_multipart(bytes: &[u8], boundary: &str) -> Option<Self> {
        let delimiter = format!("--{boundary}");
        let mut form = Self::default();
        let mut rest = &bytes[find(bytes, delimiter.as_bytes())? + delimiter.len()..];
        loop {
            if rest.starts_with(b"--") {
                return Some(form);
            }
            rest = rest.strip_prefix(b"\r\n")?;
            let head_end = find(rest, b"\r\n\r\n")?;
            let head = std::str::from_utf8(&rest[..head_end]).ok()?;
            let body = &rest[head_end + 4..];
            let end = find(body, format!("\r\n{delimiter}").as_bytes())?;
            let (name, is_file) = disposition(head)?;
            let value = Zeroizing::new(body[..end].to_vec());
            if is_file {
                form.1.entry(name).or_insert(value);
            } else {
                let text = String::from_utf8(value.to_vec()).ok()?;
                form.0.entry(name).or_insert_with(|| Zeroizing::new(text));
            }
            rest = &body[end + 2 + delimiter.len()..];
        }
    }

    /// An uploaded file's contents, when one was chosen (an empty file
    /// field counts as none).
    pub(crate) fn file(&self, name: &str) -> Option<&[u8]> {
        self.1.get(name).map(|v| v.as_slice()).filter(|v| !v.is_empty())
    }

    /// A field's value, `""` when absent.
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", |v| v.as_str())
    }

    /// Whether a field (a checked checkbox) was sent.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The fields as a map (a query string).
    pub(crate) fn into_map(self) -> HashMap<String, String> {
        self.0.into_iter().map(|(k, v)| (k, v.to_string())).collect()
    }

    /// The same form without the values no page may show again (and
    /// without files).
    fn shown(mut self) -> Self {
        for field in SECRET_FIELDS {
            self.0.remove(field);
        }
        self.1.clear();
        self
    }
}

/// A download's file name: the characters a name or id may hold, others
/// replaced.
pub(crate) fn safe_filename(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

/// `/path?done=…` (what the page then says was done).
fn done(path: &str, what: &str) -> Answer {
    let query: String = form_urlencoded::Serializer::new(String::new()).append_pair("done", what).finish();
    Answer::SeeOther(format!("{path}?{query}"))
}

/// Which errors are the form's (shown next to its fields) rather than the
/// page's.
fn is_form_error(e: &KmsError) -> bool {
    matches!(e.code(), Code::InvalidArgument | Code::AlreadyExists | Code::FailedPrecondition)
}

fn lines(value: &str) -> Vec<String> {
    value.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn policy(form: &Form) -> Result<PolicyInput, KmsError> {
    let mode = match form.get("mode") {
        "" | "all" => Mode::All,
        "any" => Mode::Any,
        other => return Err(KmsError::InvalidArgument(format!("policy.mode {other:?} is not all or any"))),
    };
    Ok(PolicyInput {
        allow_ips: lines(form.get("allow_ips")),
        allow_macs: lines(form.get("allow_macs")),
        allow_asserted_mac: form.has("allow_asserted_mac"),
        require_cert: form.has("require_cert"),
        mode,
    })
}

fn number(form: &Form, field: &str) -> Result<u32, KmsError> {
    let value = form.get(field).trim();
    if value.is_empty() {
        return Ok(0);
    }
    value.parse().map_err(|_| KmsError::InvalidArgument(format!("{field}: {value:?} is not a whole number")))
}

/// A secret's value: the uploaded file byte for byte, or the text area;
/// not both. Secrets are UTF-8 text, as in the API.
fn secret_value(form: &Form) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    match (form.file("value_file"), form.get("value")) {
        (Some(_), text) if !text.is_empty() => {
            Err(KmsError::InvalidArgument("value: give the value or a file, not both".to_owned()))
        }
        (Some(file), _) if std::str::from_utf8(file).is_err() => Err(KmsError::InvalidArgument(
            "value: the file is not UTF-8 text (a secret is text; base64 binary values first)".to_owned(),
        )),
        (Some(file), _) => Ok(Zeroizing::new(file.to_vec())),
        (None, text) => Ok(Zeroizing::new(text.as_bytes().to_vec())),
    }
}

/// The `confirm` field holds `name`: a destructive form was meant.
fn confirmed(form: &Form, name: &str, what: &str, to: &str) -> Result<(), KmsError> {
    if form.get("confirm") == name {
        return Ok(());
    }
    Err(KmsError::InvalidArgument(format!("confirm: type {what} ({name}) to {to}")))
}

fn optional(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// The answer to a refused form: the page again with the message next to
/// its field, or the error page for a refusal that is not about the form.
async fn refused<S: Store + Clone>(
    kms: &Kms<S>,
    ctx: &Ctx,
    operation: &'static str,
    target: Target<'_>,
    form_id: &'static str,
    form: Form,
    e: KmsError,
) -> Reply {
    if !is_form_error(&e) {
        return error_reply(operation, &e, pages::error_page(ctx, "Refused", &e));
    }
    let error = FormError::new(form_id, &e, form.shown());
    let rendered = match target {
        Target::Keystores => pages::keystores(kms, ctx, None, Some(&error)).await,
        Target::Keystore(id) => pages::keystore(kms, ctx, id, None, Some(&error)).await,
        Target::Key(id) => pages::key(kms, ctx, id, None, Some(&error)).await,
        Target::Operators => pages::operators_with(kms, ctx, None, Some(&error)).await,
    };
    match rendered {
        Ok(markup) => error_reply(operation, &e, markup),
        Err((_, page_error)) => error_reply(operation, &page_error, pages::error_page(ctx, "Refused", &page_error)),
    }
}

/// The page a form is on.
#[derive(Clone, Copy)]
enum Target<'a> {
    Keystores,
    Keystore(&'a str),
    Key(&'a str),
    Operators,
}

pub(super) async fn create_keystore<S: Store + Clone>(kms: &Kms<S>, ctx: &Ctx, form: Form) -> Reply {
    const OP: &str = "CreateKeystore";
    let op = match policy(&form) {
        Ok(policy) => {
            kms::CreateKeystore { name: form.get("name").trim().to_owned(), policy, alias: optional(form.get("alias")) }
        }
        Err(e) => return refused(kms, ctx, OP, Target::Keystores, "create-keystore", form, e).await,
    };
    match kms.execute(&ctx.caller, op).await {
        Ok(ks) => Reply::new(OP, done(&format!("/keystores/{}", ks.id), &format!("Keystore {} created.", ks.name))),
        Err(e) => refused(kms, ctx, OP, Target::Keystores, "create-keystore", form, e).await,
    }
}

pub(super) async fn keystore_action<S: Store + Clone>(
    kms: &Kms<S>,
    ctx: &Ctx,
    id: &str,
    action: &str,
    form: Form,
) -> Reply {
    let page = format!("/keystores/{id}");
    let here = Target::Keystore(id);
    match action {
        "policy" => {
            const OP: &str = "UpdateKeystore";
            let op = match policy(&form) {
                Ok(policy) => kms::UpdateKeystore {
                    keystore_id: id.to_owned(),
                    policy: Some(policy),
                    alias: Some(optional(form.get("alias"))),
                },
                Err(e) => return refused(kms, ctx, OP, here, "policy", form, e).await,
            };
            match kms.execute(&ctx.caller, op).await {
                Ok(_) => Reply::new(OP, done(&page, "Policy saved.")),
                Err(e) => refused(kms, ctx, OP, here, "policy", form, e).await,
            }
        }
        "delete" => {
            const OP: &str = "DeleteKeystore";
            let keystore = match kms.execute(&ctx.caller, kms::GetKeystore { keystore_id: id.to_owned() }).await {
                Ok(ks) => ks,
                Err(e) => return error_reply(OP, &e, pages::error_page(ctx, "Refused", &e)),
            };
            if let Err(e) = confirmed(&form, &keystore.name, "the keystore's name", "delete it") {
                return refused(kms, ctx, OP, here, "delete-keystore", form, e).await;
            }
            match kms.execute(&ctx.caller, kms::DeleteKeystore { keystore_id: id.to_owned() }).await {
                Ok(()) => Reply::new(OP, done("/keystores", &format!("Keystore {} deleted.", keystore.name))),
                Err(e) => refused(kms, ctx, OP, here, "delete-keystore", form, e).await,
            }
        }
        "keys" => {
            const OP: &str = "CreateKey";
            let kind = match KeyKind::from_name(form.get("key_type")) {
                Some(kind) if kind != KeyKind::Secret => kind,
                _ => {
                    let e = KmsError::InvalidArgument(format!(
                        "key_type: {:?} is not a key type ({})",
                        form.get("key_type"),
                        pages::KEY_TYPES.join(", ")
                    ));
                    return refused(kms, ctx, OP, here, "create-key", form, e).await;
                }
            };
            let rotation_period_days = match number(&form, "rotation_period_days") {
                Ok(days) => days,
                Err(e) => return refused(kms, ctx, OP, here, "create-key", form, e).await,
            };
            let op = kms::CreateKey {
                keystore_id: id.to_owned(),
                name: form.get("name").trim().to_owned(),
                kind,
                rotation_period_days,
                origin: KeyOrigin::Skm,
            };
            match kms.execute(&ctx.caller, op).await {
                Ok(key) => Reply::new(OP, done(&format!("/keys/{}", key.id), &format!("Key {} created.", key.name))),
                Err(e) => refused(kms, ctx, OP, here, "create-key", form, e).await,
            }
        }
        "secrets" => {
            const OP: &str = "CreateSecret";
            let max_versions = match number(&form, "max_versions") {
                Ok(n) => n,
                Err(e) => return refused(kms, ctx, OP, here, "create-secret", form, e).await,
            };
            let value = match secret_value(&form) {
                Ok(value) => value,
                Err(e) => return refused(kms, ctx, OP, here, "create-secret", form, e).await,
            };
            let op = kms::CreateSecret {
                keystore_id: id.to_owned(),
                name: form.get("name").trim().to_owned(),
                value,
                max_versions,
            };
            match kms.execute(&ctx.caller, op).await {
                Ok(key) => Reply::new(OP, done(&format!("/keys/{}", key.id), &format!("Secret {} created.", key.name))),
                Err(e) => refused(kms, ctx, OP, here, "create-secret", form, e).await,
            }
        }
        _ => not_found("No such form."),
    }
}

pub(super) async fn certificate_action<S: Store + Clone>(
    kms: &Kms<S>,
    ctx: &Ctx,
    id: &str,
    action: &str,
    form: Form,
) -> Reply {
    let page = format!("/keystores/{id}");
    let here = Target::Keystore(id);
    match action {
        "issue" => {
            const OP: &str = "IssueClientCertificate";
            let days = match number(&form, "days") {
                Ok(days) => days,
                Err(e) => return refused(kms, ctx, OP, here, "issue-cert", form, e).await,
            };
            let name = form.get("name").trim().to_owned();
            let op = kms::IssueClientCertificate {
                keystore_id: id.to_owned(),
                name: name.clone(),
                days,
                password: Zeroizing::new(form.get("password").to_owned()),
            };
            match kms.execute(&ctx.caller, op).await {
                Ok(issued) => Reply::new(
                    OP,
                    Answer::Download {
                        content_type: "application/x-pkcs12",
                        filename: format!("{name}.p12"),
                        body: issued.pkcs12,
                    },
                ),
                Err(e) => refused(kms, ctx, OP, here, "issue-cert", form, e).await,
            }
        }
        "register" => {
            const OP: &str = "RegisterClientCertificate";
            let uploaded = form.file("pem_file").map(|f| String::from_utf8_lossy(f).into_owned());
            let pem = uploaded.as_deref().unwrap_or_else(|| form.get("pem"));
            let sha256 = match (form.get("sha256").trim(), pem.trim()) {
                (sha, "") => sha.to_owned(),
                ("", pem) => match CertificateDer::from_pem_slice(pem.as_bytes()) {
                    Ok(der) => hex::encode(skm_crypto::sha256(&der)),
                    Err(_) => {
                        let e = KmsError::InvalidArgument(
                            "pem: not a PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
                        );
                        return refused(kms, ctx, OP, here, "register-cert", form, e).await;
                    }
                },
                _ => {
                    let e = KmsError::InvalidArgument("sha256: give the fingerprint or the PEM, not both".to_owned());
                    return refused(kms, ctx, OP, here, "register-cert", form, e).await;
                }
            };
            let op = kms::RegisterClientCertificate {
                keystore_id: id.to_owned(),
                name: form.get("name").trim().to_owned(),
                sha256,
            };
            match kms.execute(&ctx.caller, op).await {
                Ok(_) => Reply::new(OP, done(&page, "Certificate registered.")),
                Err(e) => refused(kms, ctx, OP, here, "register-cert", form, e).await,
            }
        }
        "revoke" => {
            const OP: &str = "RevokeClientCertificate";
            let op = kms::RevokeClientCertificate {
                keystore_id: id.to_owned(),
                certificate: form.get("certificate").to_owned(),
            };
            match kms.execute(&ctx.caller, op).await {
                Ok(_) => Reply::new(OP, done(&page, &format!("Certificate {} revoked.", form.get("certificate")))),
                Err(e) => refused(kms, ctx, OP, here, "revoke-cert", form, e).await,
            }
        }
        _ => not_found("No such form."),
    }
}

pub(super) async fn key_action<S: Store + Clone>(kms: &Kms<S>, ctx: &Ctx, id: &str, action: &str, form: Form) -> Reply {
    let page = format!("/keys/{id}");
    let here = Target::Key(id);
    let key_id = id.to_owned();
    let (operation, result) = match action {
        "rotate" => ("RotateKey", kms.execute(&ctx.caller, kms::RotateKey { key_id }).await),
        "enable" => ("EnableKey", kms.execute(&ctx.caller, kms::EnableKey { key_id }).await),
        "disable" => ("DisableKey", kms.execute(&ctx.caller, kms::DisableKey { key_id }).await),
        "cancel-deletion" => ("CancelKeyDeletion", kms.execute(&ctx.caller, kms::CancelKeyDeletion { key_id }).await),
        "rotation" => match number(&form, "rotation_period_days") {
            Ok(days) => {
                ("UpdateKey", kms.execute(&ctx.caller, kms::UpdateKey { key_id, rotation_period_days: days }).await)
            }
            Err(e) => return refused(kms, ctx, "UpdateKey", here, "rotation", form, e).await,
        },
        "secret" => match secret_value(&form) {
            Ok(value) => ("UpdateSecret", kms.execute(&ctx.caller, kms::UpdateSecret { key_id, value }).await),
            Err(e) => return refused(kms, ctx, "UpdateSecret", here, "secret", form, e).await,
        },
        "schedule-deletion" => {
            const OP: &str = "ScheduleKeyDeletion";
            let key = match kms.execute(&ctx.caller, kms::DescribeKey { key_id: key_id.clone() }).await {
                Ok(key) => key,
                Err(e) => return error_reply(OP, &e, pages::error_page(ctx, "Refused", &e)),
            };
            if let Err(e) = confirmed(&form, &key.name, "the key's name", "schedule its deletion") {
                return refused(kms, ctx, OP, here, "schedule-deletion", form, e).await;
            }
            match number(&form, "pending_days") {
                Ok(pending_days) => {
                    (OP, kms.execute(&ctx.caller, kms::ScheduleKeyDeletion { key_id, pending_days }).await)
                }
                Err(e) => return refused(kms, ctx, OP, here, "schedule-deletion", form, e).await,
            }
        }
        _ => return not_found("No such form."),
    };
    match result {
        Ok(key) => {
            let what = match action {
                "rotate" => format!("Rotated: version {} is current.", key.material.newest_version()),
                "enable" => "Enabled.".to_owned(),
                "disable" => "Disabled: every use is refused.".to_owned(),
                "cancel-deletion" => "Deletion cancelled; the key is disabled until enabled.".to_owned(),
                "rotation" => "Rotation period saved.".to_owned(),
                "secret" => format!("Version {} stored.", key.material.newest_version()),
                _ => "Deletion scheduled.".to_owned(),
            };
            Reply::new(operation, done(&page, &what))
        }
        Err(e) => {
            let form_id = match action {
                "rotation" => "rotation",
                "secret" => "secret",
                "schedule-deletion" => "schedule-deletion",
                _ => "actions",
            };
            refused(kms, ctx, operation, here, form_id, form, e).await
        }
    }
}

pub(super) async fn revoke_operator<S: Store + Clone>(kms: &Kms<S>, ctx: &Ctx, form: Form) -> Reply {
    const OP: &str = "RevokeOperator";
    match kms.execute(&ctx.caller, kms::RevokeOperator { sha256: form.get("sha256").trim().to_owned() }).await {
        Ok(sha) => Reply::new(OP, done("/operators", &format!("Operator certificate {sha} revoked."))),
        Err(e) => refused(kms, ctx, OP, Target::Operators, "revoke-operator", form, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_forms_keep_each_fields_first_value() {
        let form = Form::parse(b"name=a+b%26c&csrf=t&name=second&require_cert=on");
        assert_eq!(form.get("name"), "a b&c");
        assert!(form.has("require_cert") && !form.has("allow_asserted_mac"));
        assert_eq!(form.get("missing"), "");
    }

    #[test]
    fn multipart_forms_give_text_fields_and_files_byte_for_byte() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"value_file\"; filename=\"s.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\xff\r\n--X\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"empty\"; filename=\"\"\r\n\r\n\r\n--XyZ--\r\n";
        assert_eq!(multipart_boundary("multipart/form-data; boundary=XyZ").as_deref(), Some("XyZ"));
        assert_eq!(multipart_boundary("application/x-www-form-urlencoded"), None);
        let form = Form::parse_multipart(body, "XyZ").expect("well formed");
        assert_eq!(form.get("csrf"), "tok");
        assert_eq!(form.file("value_file"), Some(&b"\x00\xff\r\n--X"[..]));
        assert_eq!(form.file("empty"), None, "no file chosen");
        assert!(Form::parse_multipart(b"--XyZ\r\nno head end", "XyZ").is_none());
        assert!(Form::parse_multipart(b"nothing", "XyZ").is_none());
    }

    #[test]
    fn a_secret_is_the_file_or_the_text_not_both() {
        let text = Form::parse(b"value=abc");
        assert_eq!(secret_value(&text).unwrap().as_slice(), b"abc");
        let binary = Form(HashMap::new(), HashMap::from([("value_file".into(), Zeroizing::new(vec![0xff]))]));
        assert!(secret_value(&binary).unwrap_err().to_string().contains("not UTF-8 text"));
        let file = Form(HashMap::new(), HashMap::from([("value_file".into(), Zeroizing::new(b"pw\n".to_vec()))]));
        assert_eq!(secret_value(&file).unwrap().as_slice(), b"pw\n");
        let both = Form(text.0.clone(), HashMap::from([("value_file".into(), Zeroizing::new(vec![1]))]));
        assert!(secret_value(&both).unwrap_err().to_string().starts_with("value: give the value or a file"));
        let shown = both.shown();
        assert!(shown.file("value_file").is_none() && !shown.has("value"), "no secret is shown again");
    }

    #[test]
    fn download_names_hold_only_safe_characters() {
        assert_eq!(safe_filename("web-app.p12"), "web-app.p12");
        assert_eq!(safe_filename("a\"b\r\n;c"), "a_b___c");
    }
}
