//! The `skm` binary: see the library.

fn main() -> std::process::ExitCode {
    skm::main()
}
