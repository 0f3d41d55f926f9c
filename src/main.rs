//! The `smoe` command line: parsing only; the work lives in the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
