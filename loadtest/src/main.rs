//! `ropc-loadtest`: see the library's documentation and `--help`.

fn main() -> std::process::ExitCode {
    ropc_loadtest::cli::main()
}
