//! `distill`: the command-line interface. It only parses, validates and calls the library;
//! see `src/cli/` for the subcommands and `distill --help` for the surface.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
