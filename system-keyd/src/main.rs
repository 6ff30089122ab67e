//! system-keyd binary: see the library.

fn main() -> std::process::ExitCode {
    skm_runtime::daemon::main::<system_keyd::SystemKeyd>()
}
