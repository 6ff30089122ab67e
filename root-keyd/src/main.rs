//! root-keyd binary: see the library.

fn main() -> std::process::ExitCode {
    skm_runtime::daemon::main::<root_keyd::RootKeyd>()
}
