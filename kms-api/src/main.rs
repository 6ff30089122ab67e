//! kms-api binary: see the library.

fn main() -> std::process::ExitCode {
    skm_runtime::daemon::main::<kms_api::KmsApi>()
}
