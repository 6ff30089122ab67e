//! The public contract of `skm.api.v1` and `skm.admin.v1` against the
//! descriptor set checked in at `proto/descriptors/skm-public.binpb`: a
//! message, field, enum value, service or RPC that is removed, renumbered,
//! retyped or relabelled fails this test; additions pass.
//!
//! After an intended, compatible change, `scripts/update-descriptors`
//! rewrites the checked-in set (`SKM_UPDATE_DESCRIPTORS=1` makes this test
//! write it instead of comparing).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorSet, field_descriptor_proto};

/// The packages applications and operators generate code from.
const PUBLIC: [&str; 2] = ["skm.api.v1", "skm.admin.v1"];

fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("descriptors/skm-public.binpb")
}

/// The public files of the current build, without comments (so that
/// editing a comment doesn't change the checked-in set).
fn current() -> FileDescriptorSet {
    let mut all = FileDescriptorSet::decode(skm_proto::FILE_DESCRIPTOR_SET).unwrap();
    all.file.retain(|f| PUBLIC.contains(&f.package()));
    for f in &mut all.file {
        f.source_code_info = None;
    }
    all
}

/// What a field is on the wire and to generated code.
#[derive(Debug, PartialEq, Eq)]
struct FieldShape {
    name: String,
    label: Option<field_descriptor_proto::Label>,
    r#type: Option<field_descriptor_proto::Type>,
    type_name: String,
    /// Name of the oneof it belongs to, if any.
    oneof: Option<String>,
}

/// Every message (nested ones too) by full name, with its fields by number.
fn messages(set: &FileDescriptorSet) -> BTreeMap<String, BTreeMap<i32, FieldShape>> {
    fn walk(prefix: &str, m: &DescriptorProto, out: &mut BTreeMap<String, BTreeMap<i32, FieldShape>>) {
        let name = format!("{prefix}.{}", m.name());
        let fields = m
            .field
            .iter()
            .map(|f| {
                let oneof = f
                    .oneof_index
                    .filter(|_| !f.proto3_optional())
                    .and_then(|i| m.oneof_decl.get(i as usize))
                    .map(|o| o.name().to_owned());
                let shape = FieldShape {
                    name: f.name().to_owned(),
                    label: f.label.and_then(|l| field_descriptor_proto::Label::try_from(l).ok()),
                    r#type: f.r#type.and_then(|t| field_descriptor_proto::Type::try_from(t).ok()),
                    type_name: f.type_name().to_owned(),
                    oneof,
                };
                (f.number(), shape)
            })
            .collect();
        out.insert(name.clone(), fields);
        for nested in &m.nested_type {
            walk(&name, nested, out);
        }
    }
    let mut out = BTreeMap::new();
    for f in &set.file {
        for m in &f.message_type {
            walk(&format!(".{}", f.package()), m, &mut out);
        }
    }
    out
}

/// Every enum by full name, with its values by number.
fn enums(set: &FileDescriptorSet) -> BTreeMap<String, BTreeMap<i32, String>> {
    let mut out = BTreeMap::new();
    for f in &set.file {
        for e in &f.enum_type {
            let values = e.value.iter().map(|v| (v.number(), v.name().to_owned())).collect();
            out.insert(format!(".{}.{}", f.package(), e.name()), values);
        }
        // Enums nested in messages are not used by SKM's protos; a new one
        // would be an addition.
    }
    out
}

/// Every RPC as `.pkg.Service/Method` → (input, output, client streaming, server streaming).
fn rpcs(set: &FileDescriptorSet) -> BTreeMap<String, (String, String, bool, bool)> {
    let mut out = BTreeMap::new();
    for f in &set.file {
        for s in &f.service {
            for m in &s.method {
                out.insert(
                    format!(".{}.{}/{}", f.package(), s.name(), m.name()),
                    (m.input_type().to_owned(), m.output_type().to_owned(), m.client_streaming(), m.server_streaming()),
                );
            }
        }
    }
    out
}

/// Every change from `old` to `new` that breaks generated clients or the
/// wire format, one line each; empty when `new` only adds.
fn breaking_changes(old: &FileDescriptorSet, new: &FileDescriptorSet) -> Vec<String> {
    let mut problems = Vec::new();
    let new_messages = messages(new);
    for (name, old_fields) in messages(old) {
        let Some(new_fields) = new_messages.get(&name) else {
            problems.push(format!("message {name} was removed"));
            continue;
        };
        for (number, old_field) in &old_fields {
            match new_fields.get(number) {
                None => match new_fields.iter().find(|(_, f)| f.name == old_field.name) {
                    Some((n, _)) => {
                        problems.push(format!("{name}.{} was renumbered from {number} to {n}", old_field.name))
                    }
                    None => problems.push(format!("{name}.{} (field {number}) was removed", old_field.name)),
                },
                Some(new_field) if new_field != old_field => {
                    problems.push(format!("{name} field {number} changed from {old_field:?} to {new_field:?}"))
                }
                Some(_) => {}
            }
        }
    }
    let new_enums = enums(new);
    for (name, old_values) in enums(old) {
        let Some(new_values) = new_enums.get(&name) else {
            problems.push(format!("enum {name} was removed"));
            continue;
        };
        for (number, value) in &old_values {
            if new_values.get(number) != Some(value) {
                problems.push(format!("enum {name} value {value} = {number} was removed or renamed"));
            }
        }
    }
    let new_rpcs = rpcs(new);
    for (name, shape) in rpcs(old) {
        match new_rpcs.get(&name) {
            None => problems.push(format!("rpc {name} was removed")),
            Some(new_shape) if *new_shape != shape => {
                problems.push(format!("rpc {name} changed from {shape:?} to {new_shape:?}"))
            }
            Some(_) => {}
        }
    }
    problems
}

#[test]
fn public_protos_keep_the_checked_in_contract() {
    let current = current();
    assert_eq!(current.file.len(), PUBLIC.len(), "one file per public package");
    let path = checked_in_path();
    if std::env::var_os("SKM_UPDATE_DESCRIPTORS").is_some() {
        std::fs::write(&path, current.encode_to_vec()).unwrap();
        println!("wrote {}", path.display());
        return;
    }
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/update-descriptors)", path.display()));
    let checked_in = FileDescriptorSet::decode(bytes.as_slice()).unwrap();
    let problems = breaking_changes(&checked_in, &current);
    assert!(
        problems.is_empty(),
        "breaking changes to the public protos against {}:\n  {}\n(compatible additions pass; if this break is intended, \
         it needs a new package version, not an update of the checked-in set)",
        path.display(),
        problems.join("\n  ")
    );
}

/// The checker against edits made to a copy of the current set: each kind
/// of break is reported, and an addition is not.
#[test]
fn the_check_reports_each_kind_of_break_and_passes_additions() {
    fn api(set: &mut FileDescriptorSet) -> &mut prost_types::FileDescriptorProto {
        set.file.iter_mut().find(|f| f.package() == "skm.api.v1").unwrap()
    }
    fn encrypt_request(set: &mut FileDescriptorSet) -> &mut DescriptorProto {
        api(set).message_type.iter_mut().find(|m| m.name() == "EncryptRequest").unwrap()
    }
    let base = current();
    assert_eq!(breaking_changes(&base, &base), Vec::<String>::new());

    let mut renumbered = base.clone();
    let field = encrypt_request(&mut renumbered).field.iter_mut().find(|f| f.name() == "aad").unwrap();
    let (old, new) = (field.number(), field.number() + 100);
    field.number = Some(new);
    assert_eq!(
        breaking_changes(&base, &renumbered),
        vec![format!(".skm.api.v1.EncryptRequest.aad was renumbered from {old} to {new}")]
    );

    let mut removed = base.clone();
    encrypt_request(&mut removed).field.retain(|f| f.name() != "aad");
    let problems = breaking_changes(&base, &removed);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with(".skm.api.v1.EncryptRequest.aad (field ") && problems[0].ends_with("was removed"));

    let mut retyped = base.clone();
    let field = encrypt_request(&mut retyped).field.iter_mut().find(|f| f.name() == "aad").unwrap();
    field.r#type = Some(field_descriptor_proto::Type::String as i32);
    let problems = breaking_changes(&base, &retyped);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with(".skm.api.v1.EncryptRequest field "), "{problems:?}");
    assert!(problems[0].contains("changed from"), "{problems:?}");

    let mut no_message = base.clone();
    api(&mut no_message).message_type.retain(|m| m.name() != "WhoAmIRequest");
    let problems = breaking_changes(&base, &no_message);
    assert!(problems.contains(&"message .skm.api.v1.WhoAmIRequest was removed".to_owned()), "{problems:?}");

    let mut no_rpc = base.clone();
    api(&mut no_rpc).service[0].method.retain(|m| m.name() != "Sign");
    assert_eq!(breaking_changes(&base, &no_rpc), vec!["rpc .skm.api.v1.KeyService/Sign was removed".to_owned()]);

    let mut added = base.clone();
    let mut extra = encrypt_request(&mut added).field[0].clone();
    extra.name = Some("context".to_owned());
    extra.json_name = Some("context".to_owned());
    extra.number = Some(9);
    encrypt_request(&mut added).field.push(extra);
    api(&mut added).message_type.push(DescriptorProto { name: Some("Added".to_owned()), ..Default::default() });
    assert_eq!(breaking_changes(&base, &added), Vec::<String>::new());
}
