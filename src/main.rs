use clap::Parser;

/// mimalloc rather than glibc's allocator: it keeps allocations of a size class together, so
/// the sockets that stay after a reconnect storm do not pin the pages of the handshake buffers
/// (hyper's 8 KiB read and write buffers) freed around them. With glibc, 10,000 Node clients
/// connecting at once left 8 KiB per idle connection even after `malloc_trim`; with mimalloc
/// 3.3 KiB, and HTTP publishes cost a fifth less CPU (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: how long freed pages wait before they go back to the
/// OS. `libmimalloc-sys` names no constant for it; it is entry 15 of `mi_option_e` in both the
/// v2 and the v3 `mimalloc.h` it bundles.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Freed pages go back at once rather than after mimalloc's default 10 ms: after a
    // reconnect storm that is what keeps an idle connection under 4 KiB (docs/benchmarks.md).
    // SAFETY: setting an option is safe at any time; it only changes when pages are purged.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    let cli = pushi::cli::Cli::parse();
    match pushi::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pushi: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
