//! `distill`: the command-line interface. It only parses, validates and calls the library;
//! see `src/cli/` for the subcommands and `distill --help` for the surface.

mod cli;

fn main() -> std::process::ExitCode {
    // Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid…" while enumerating
    // adapters when it is unset (servers, containers, CI). We never open a window, so point
    // it at the temp directory rather than show users a misleading error line. This runs
    // before any thread exists.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    cli::main()
}
