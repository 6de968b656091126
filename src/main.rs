use std::process::ExitCode;

// The static (musl) binary, which the package installs: musl's own allocator cost it 17% more CPU
// than the glibc build for a plan of 300 hosts, mostly in malloc and free. jemalloc, as ripgrep
// does for its musl builds. The glibc build keeps glibc's allocator (jemalloc was within the
// noise of it there, mimalloc slower).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    clockprov::main()
}
