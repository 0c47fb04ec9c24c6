//! The `dapsync` binary: everything is in the library; see `dapsync --help`.

fn main() -> std::process::ExitCode {
    dapsync::cli::main()
}
