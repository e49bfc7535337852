use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = pushi::cli::Cli::parse();
    match pushi::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pushi: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
