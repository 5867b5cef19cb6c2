// The launch runtime of the CUDA emulator (pasted by compiler.py where
// prelude.h includes it).
//
// A launch starts one OS thread per CUDA thread of a block; those threads run
// the blocks of the grid one after another (a barrier ends each block, where
// its last thread checks and re-poisons shared memory for the next block).
// A cooperative launch instead starts one OS thread per CUDA thread of the
// grid: every block is resident at once, with its own Block (barrier, warps,
// dynamic shared memory), so the kernel may wait for other blocks (a grid
// barrier spinning in __nanosleep). Its blocks start last block first, each
// only once every block started before it has returned or sleeps in
// __nanosleep: a kernel that reads other blocks' results without waiting for
// them reads the poison, every time.
// Kernel bugs become a fault message, never a hang or a crash:
//  - a barrier reached at different call sites (or by some threads while
//    others returned from the kernel) fails at once; every other deadlock
//    (e.g. lanes at a shuffle while the rest of the warp waits at
//    __syncthreads) fails when the last running thread of the block blocks;
//  - a launch where threads spin in __nanosleep while no other thread runs
//    or reaches a barrier for spin_timeout_s (a grid barrier some block never
//    reaches, or one in a launch that is not cooperative) fails (watch());
//  - SIGSEGV/SIGBUS/SIGFPE in a worker thread is caught (sigaltstack +
//    siglongjmp) and reported with the faulting address.
// The first fault wins; every thread of the launch then stops at its next
// barrier, __nanosleep or __threadfence (a woken waiter stops at once).

#include <climits>
#include <csetjmp>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#ifndef CUDAEMU_YIELDS
#define CUDAEMU_YIELDS 2
#endif
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace cudaemu {

// What a thread is doing, for deadlock and hang reports: kind | line << STATE_SHIFT.
enum WaitKind : int { RUNNING = 0, SYNCTHREADS = 1, WARP = 2, EXITED = 3, SLEEPING = 4, FINISHED = 5 };
constexpr int STATE_SHIFT = 3, STATE_MASK = 7;
constexpr unsigned char POISON = 0xFF;
constexpr unsigned char CANARY = 0xA5;
constexpr size_t PAGE = 4096;
// The most threads a launch may start (a cooperative one starts grid x block).
constexpr unsigned long long MAX_LAUNCH_THREADS = 4096;

// Static shared memory: the kernels' function-local `static` (__shared__)
// objects. g++ ignores section attributes on the static locals of templates,
// so compiler.py finds them in the library's symbol table (nm) and tells us.
// One object per process: blocks that run at the same time (a cooperative
// launch) would share it, so a cooperative launch refuses a module with any.
constexpr int MAX_SHARED_OBJECTS = 256;
inline unsigned char* shared_objects[MAX_SHARED_OBJECTS];
inline size_t shared_sizes[MAX_SHARED_OBJECTS];
inline int n_shared_objects = 0;

inline void futex_wake_all(std::atomic<unsigned>* word) {
    syscall(SYS_futex, reinterpret_cast<unsigned*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}
inline void futex_wait(std::atomic<unsigned>* word, unsigned expected, long ns) {
    timespec ts{ns / 1000000000L, ns % 1000000000L};
    syscall(SYS_futex, reinterpret_cast<unsigned*>(word), FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
}
inline double now_s() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// A reusable barrier for a fixed number of threads. Arrivals are serialised by
// a mutex (the call-site check needs the first arrival's site); waiters sleep
// on the generation word (futex), the last arrival bumps it and wakes them.
struct Barrier {
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    std::atomic<unsigned> gen{0};
    int size = 0, arrived = 0;
    int kind = 0;
    unsigned line = 0, col = 0;
    long long acc[2] = {0, 0};  // __syncthreads_count, by generation parity
};

struct Warp {
    Barrier bar;
    int lanes = 0;
    unsigned long long slots[2][32];  // shuffle exchange, by the lanes' shuffle-count parity
};

struct Launch;
struct Thread;

// One resident block: its barrier, warps and dynamic shared memory. A plain
// launch has one, reused by block after block; a cooperative launch one per block.
struct Block {
    Launch* L = nullptr;
    Thread* threads = nullptr;  // its nthreads threads (in Launch::threads)
    Barrier bar;                // __syncthreads and the end-of-block barrier
    Warp* warps = nullptr;
    int nwarps = 0;
    std::atomic<int> blocked{0};  // threads waiting at a barrier and not yet released
    std::atomic<bool> slept{false};  // a thread of it has called __nanosleep (cooperative start order)
    // dynamic shared memory: [dyn, dyn + shmem) then canary slack, then a PROT_NONE page
    unsigned char* map = nullptr;
    size_t map_len = 0;
    unsigned char* dyn = nullptr;
    size_t slack = 0;
};

struct Thread {
    Launch* L = nullptr;
    Block* B = nullptr;
    int tid = 0, lane = 0;  // within the block
    Warp* warp = nullptr;
    unsigned shuffles = 0;
    unsigned backoff = 0;  // __nanosleep calls since the last barrier (the sleep doubles)
    std::atomic<int> state{RUNNING};  // WaitKind | line << STATE_SHIFT
    std::atomic<unsigned> sleeps{0};  // __nanosleep calls: the watchdog tells spinning from computing
    sigjmp_buf top;
    volatile sig_atomic_t in_kernel = 0;
    volatile int fault_sig = 0;
    void* volatile fault_addr = nullptr;
    unsigned long long block = 0;  // the linear index of the block it runs
    pthread_t handle;
};

struct Launch {
    const char* name = "";
    dim3 grid, block;
    int nthreads = 0;  // per block
    unsigned long long nblocks = 0;
    bool cooperative = false;
    void (*body)(void*) = nullptr;
    void* ctx = nullptr;
    Block* blocks = nullptr;  // 1, or nblocks when cooperative
    int nresident = 0;
    Thread* threads = nullptr;  // nresident * nthreads
    int nworkers = 0;
    size_t shmem = 0;
    double timeout_s = 60.0, spin_timeout_s = 2.0;
    // cooperative start order: blocks nblocks-1, nblocks-2, ... may start once `released` exceeds their rank
    std::atomic<unsigned> released{0};
    std::atomic<unsigned long long> progress{0};  // barrier releases, thread exits and block starts
    std::atomic<unsigned> live{0};  // worker threads still running; the last one wakes the launcher
    std::atomic<bool> fault{false};
    pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
    char message[4096] = {0};
    unsigned long long fault_addr = 0;
};

static thread_local Thread* self = nullptr;

inline unsigned char* dynamic_shared() { return self->B->dyn; }
inline int lane_id() { return self->lane; }
inline unsigned warp_lanes_mask() {
    const int n = self->warp->lanes;
    return n >= 32 ? 0xffffffffu : ((1u << n) - 1u);
}

inline int fmt_coords(char* out, size_t len, unsigned long long linear, dim3 dims) {
    const unsigned long long x = linear % dims.x, y = linear / dims.x % dims.y, z = linear / dims.x / dims.y;
    if (dims.y == 1 && dims.z == 1) return snprintf(out, len, "%llu", x);
    return snprintf(out, len, "(%llu, %llu, %llu)", x, y, z);
}

// "kernel NAME (block b, thread t)" or "(block b)" when tid < 0.
inline int fmt_where(char* out, size_t len, Launch& L, unsigned long long block, int tid) {
    char b[64], t[64];
    fmt_coords(b, sizeof b, block, L.grid);
    if (tid < 0) return snprintf(out, len, "kernel %s (block %s)", L.name, b);
    fmt_coords(t, sizeof t, (unsigned long long)tid, L.block);
    return snprintf(out, len, "kernel %s (block %s, thread %s)", L.name, b, t);
}

// Wakes every waiter of the launch (they see the fault and stop).
inline void wake_everyone(Launch& L) {
    for (int i = 0; i < L.nresident; ++i) {
        Block& B = L.blocks[i];
        B.bar.gen.fetch_add(1);
        futex_wake_all(&B.bar.gen);
        for (int w = 0; w < B.nwarps; ++w) {
            B.warps[w].bar.gen.fetch_add(1);
            futex_wake_all(&B.warps[w].bar.gen);
        }
    }
    futex_wake_all(&L.released);
}

inline void set_fault(Launch& L, const char* msg, unsigned long long addr = 0) {
    pthread_mutex_lock(&L.fault_mu);
    if (!L.fault.load()) {
        snprintf(L.message, sizeof L.message, "%s", msg);
        L.fault_addr = addr;
        L.fault.store(true);
    }
    pthread_mutex_unlock(&L.fault_mu);
    wake_everyone(L);
}

[[noreturn]] inline void stop_thread(Thread& t) {
    t.in_kernel = 0;
    siglongjmp(t.top, 2);
}

[[noreturn]] inline void fail(Thread& t, const char* what) {
    char where[256], msg[2048];
    fmt_where(where, sizeof where, *t.L, t.block, t.tid);
    snprintf(msg, sizeof msg, "%s: %s", where, what);
    set_fault(*t.L, msg);
    stop_thread(t);
}

// Stops the calling kernel thread if the launch has failed: called where
// kernels spin (__nanosleep, __threadfence), so a spinning thread ends too.
inline void poll_fault() {
    Thread* t = self;
    if (t && t->in_kernel && t->L->fault.load(std::memory_order_relaxed)) stop_thread(*t);
}

inline int site_desc(char* out, size_t len, int kind, unsigned line, unsigned col) {
    switch (kind) {
        case SYNCTHREADS: return snprintf(out, len, "__syncthreads at line %u:%u", line, col);
        case WARP: return snprintf(out, len, "a warp shuffle/vote/__syncwarp at line %u:%u", line, col);
        case EXITED: return snprintf(out, len, "the end of the kernel (returned)");
        case SLEEPING: return snprintf(out, len, "__nanosleep at line %u:%u", line, col);
        case FINISHED: return snprintf(out, len, "the end of the kernel (returned)");
    }
    return snprintf(out, len, "running");
}

// Every thread of the block is blocked and nobody can release them.
inline void report_deadlock(Thread& t) {
    Launch& L = *t.L;
    Thread* th = t.B->threads;
    char msg[3000], where[256];
    fmt_where(where, sizeof where, L, t.block, -1);
    int pos = snprintf(msg, sizeof msg, "%s: deadlock, every thread waits at a barrier some threads never reach:", where);
    for (int i = 0; i < L.nthreads && pos < int(sizeof msg) - 200;) {
        const int s = th[i].state.load();
        int j = i;
        while (j + 1 < L.nthreads && th[j + 1].state.load() == s) ++j;
        char site[128];
        site_desc(site, sizeof site, s & STATE_MASK, unsigned(s) >> STATE_SHIFT, 0);
        char* colon = strrchr(site, ':');  // the state keeps the line only
        if (colon && (s & STATE_MASK) != EXITED) *colon = 0;
        pos += snprintf(msg + pos, sizeof msg - pos, " threads %d-%d at %s;", i, j, site);
        i = j + 1;
    }
    set_fault(L, msg);
}

// Arrive at barrier b (the block's or the warp's) from call site (kind, line,
// col); returns the sum of the arrivals' pred. Stops the thread on a fault.
inline long long arrive(Thread& t, Barrier& b, int kind, unsigned line, unsigned col, long long pred,
                        void (*on_release)(Block&) = nullptr) {
    Launch& L = *t.L;
    Block& B = *t.B;
    if (L.fault.load(std::memory_order_relaxed)) stop_thread(t);
    t.state.store(RUNNING, std::memory_order_relaxed);  // no longer spinning in __nanosleep
    t.backoff = 0;
    pthread_mutex_lock(&b.mu);
    if (b.arrived == 0) {
        b.kind = kind, b.line = line, b.col = col;
    } else if (b.kind != kind || b.line != line || b.col != col) {
        char mine[128], theirs[128], what[512];
        site_desc(mine, sizeof mine, kind, line, col);
        site_desc(theirs, sizeof theirs, b.kind, b.line, b.col);
        const int others = b.arrived;
        pthread_mutex_unlock(&b.mu);
        snprintf(what, sizeof what, "barrier divergence: this thread reached %s while %d other thread(s) of the %s wait at %s",
                 mine, others, &b == &B.bar ? "block" : "warp", theirs);
        fail(t, what);
    }
    const unsigned g = b.gen.load(std::memory_order_relaxed);
    const int slot = g & 1;
    b.acc[slot] += pred;
    if (++b.arrived == b.size) {
        b.arrived = 0;
        b.acc[slot ^ 1] = 0;
        const long long total = b.acc[slot];
        if (b.size > 1) B.blocked.fetch_sub(b.size - 1);
        if (on_release) on_release(B);
        L.progress.fetch_add(1, std::memory_order_relaxed);
        b.gen.store(g + 1, std::memory_order_release);
        pthread_mutex_unlock(&b.mu);
        if (b.size > 1) futex_wake_all(&b.gen);
        if (L.fault.load()) stop_thread(t);
        return total;
    }
    pthread_mutex_unlock(&b.mu);
    t.state.store(kind | int(line << STATE_SHIFT));
    if (B.blocked.fetch_add(1) + 1 == L.nthreads) report_deadlock(t);
    for (int spin = 0; spin < CUDAEMU_YIELDS && b.gen.load(std::memory_order_acquire) == g; ++spin) sched_yield();
    const double start = now_s();
    while (b.gen.load(std::memory_order_acquire) == g) {
        if (L.fault.load()) break;
        futex_wait(&b.gen, g, 200000000L);
        if (b.gen.load(std::memory_order_acquire) == g && now_s() - start > L.timeout_s) {
            char what[256];
            snprintf(what, sizeof what, "hang: waited %.0f s at a barrier (a thread of the block never arrives)",
                     L.timeout_s);
            fail(t, what);
        }
    }
    t.state.store(RUNNING);
    if (L.fault.load()) stop_thread(t);
    return b.acc[slot];
}

inline void poison_shared(Block& B) {
    for (int i = 0; i < n_shared_objects; ++i) memset(shared_objects[i], POISON, shared_sizes[i]);
    if (B.L->shmem) memset(B.dyn, POISON, B.L->shmem);
}

// Lets the next block of a cooperative launch start (in order: last block first).
inline void release_next_block(Launch& L) {
    unsigned n = L.released.load();
    while (n < L.nblocks && !L.released.compare_exchange_weak(n, n + 1)) {}
    if (n < L.nblocks) {
        L.progress.fetch_add(1, std::memory_order_relaxed);
        futex_wake_all(&L.released);
    }
}

// End of a block: the last thread to finish checks the dynamic shared
// memory's slack canary and poisons shared memory for the next block.
inline void end_of_block(Block& B) {
    Launch& L = *B.L;
    for (size_t i = 0; i < B.slack; ++i)
        if (B.dyn[L.shmem + i] != CANARY) {
            char where[256], msg[1024];
            fmt_where(where, sizeof where, L, B.threads[0].block, -1);
            snprintf(msg, sizeof msg,
                     "%s: wrote %zu byte(s) past the end of its %zu bytes of dynamic shared memory "
                     "(shared_mem of the launch)",
                     where, i + 1, L.shmem);
            // not set_fault: we hold the block barrier's mutex
            pthread_mutex_lock(&L.fault_mu);
            if (!L.fault.load()) {
                snprintf(L.message, sizeof L.message, "%s", msg);
                L.fault.store(true);
            }
            pthread_mutex_unlock(&L.fault_mu);
            break;
        }
    if (L.cooperative) release_next_block(L);  // this block no longer runs: start the next
    else poison_shared(B);
}

inline long long block_barrier(int kind, unsigned line, unsigned col, long long pred) {
    return arrive(*self, self->B->bar, kind, line, col, pred);
}

// __nanosleep: a thread waiting for another block (a grid barrier's spin).
// It really sleeps, doubling from 1 us to 1 ms over the calls since its last
// barrier, so spinners cost little CPU; its first call lets the next block
// of a cooperative launch start (this one now waits for others).
inline void nanosleep_(unsigned ns, unsigned line) {
    Thread& t = *self;
    Launch& L = *t.L;
    if (L.fault.load(std::memory_order_relaxed)) stop_thread(t);
    t.state.store(SLEEPING | int(line << STATE_SHIFT), std::memory_order_relaxed);
    t.sleeps.fetch_add(1, std::memory_order_relaxed);
    if (L.cooperative && !t.B->slept.exchange(true)) release_next_block(L);
    long sleep_ns = long(ns > 1000 ? ns : 1000) << (t.backoff < 10 ? t.backoff : 10);
    if (sleep_ns > 1000000L) sleep_ns = 1000000L;
    ++t.backoff;
    timespec ts{0, sleep_ns};
    nanosleep(&ts, nullptr);
    if (L.fault.load(std::memory_order_relaxed)) stop_thread(t);
}

inline void check_mask(unsigned mask, const char* what) {
    if (mask != 0xffffffffu) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s with mask 0x%08x: unsupported mask (the emulator runs full-warp masks only)",
                 what, mask);
        fail(*self, msg);
    }
}

// One warp barrier per exchange: lane writes its slot of the parity buffer,
// all lanes meet, lane reads its source's slot. The next exchange writes the
// other buffer, and the one after can only start once every lane has left
// this one (it needs them all at the next barrier).
inline unsigned long long warp_exchange(unsigned long long bits, unsigned line, unsigned col, int src = -1) {
    Thread& t = *self;
    Warp& w = *t.warp;
    const int p = t.shuffles++ & 1;
    w.slots[p][t.lane] = bits;
    arrive(t, w.bar, WARP, line, col, 0);
    if (src < 0) return 0;
    if (src >= w.lanes) {
        char msg[256];
        snprintf(msg, sizeof msg, "shuffle reads lane %d of a warp of %d threads (line %u)", src, w.lanes, line);
        fail(t, msg);
    }
    return w.slots[p][src];
}

template <typename T>
inline T shuffle(T var, int src, unsigned line, unsigned col) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type wider than 8 bytes");
    unsigned long long bits = 0;
    memcpy(&bits, &var, sizeof(T));
    bits = warp_exchange(bits, line, col, src);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}

inline unsigned ballot(bool pred, unsigned line, unsigned col) {
    Thread& t = *self;
    Warp& w = *t.warp;
    const int p = t.shuffles & 1;
    warp_exchange(pred, line, col);
    unsigned r = 0;
    for (int i = 0; i < w.lanes; ++i) r |= unsigned(w.slots[p][i] != 0) << i;
    return r;
}

// ---- signals: faults of a worker thread end its block and the launch ----
inline struct sigaction previous[4];
constexpr int SIGNALS[4] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};

inline void on_signal(int sig, siginfo_t* info, void* uc) {
    Thread* t = self;
    if (t && t->in_kernel) {
        t->in_kernel = 0;
        t->fault_sig = sig;
        t->fault_addr = info->si_addr;
        siglongjmp(t->top, 1);
    }
    for (int i = 0; i < 4; ++i)
        if (SIGNALS[i] == sig) {
            const struct sigaction& p = previous[i];
            if (p.sa_flags & SA_SIGINFO) {
                if (p.sa_sigaction) return p.sa_sigaction(sig, info, uc);
            } else if (p.sa_handler != SIG_DFL && p.sa_handler != SIG_IGN) {
                return p.sa_handler(sig);
            }
            signal(sig, SIG_DFL);  // the fault repeats on return and kills the process
            return;
        }
}

inline void report_signal(Thread& t) {
    Launch& L = *t.L;
    Block& B = *t.B;
    char where[256], msg[1024];
    fmt_where(where, sizeof where, L, t.block, t.tid);
    const auto addr = reinterpret_cast<unsigned long long>(t.fault_addr);
    const unsigned char* a = static_cast<const unsigned char*>(t.fault_addr);
    if (t.fault_sig == SIGFPE)
        snprintf(msg, sizeof msg, "%s: arithmetic exception (SIGFPE: integer division by zero?)", where);
    else if (t.fault_sig == SIGILL)
        snprintf(msg, sizeof msg, "%s: illegal instruction (SIGILL)", where);
    else if (B.map && a >= B.dyn + L.shmem && a < B.map + B.map_len)
        snprintf(msg, sizeof msg,
                 "%s touched address 0x%llx: %zu bytes past the end of its %zu bytes of dynamic shared memory "
                 "(the launch's shared_mem is too small)",
                 where, addr, size_t(a - (B.dyn + L.shmem)), L.shmem);
    else
        snprintf(msg, sizeof msg, "%s touched address 0x%llx: outside every device buffer", where, addr);
    set_fault(L, msg, addr);
}

// Runs block bi of the grid on thread t; false once the launch has failed.
inline bool run_block(Thread& t, unsigned long long bi) {
    Launch& L = *t.L;
    t.block = bi;
    t.shuffles = 0;
    blockIdx = uint3{unsigned(bi % L.grid.x), unsigned(bi / L.grid.x % L.grid.y), unsigned(bi / L.grid.x / L.grid.y)};
    const int how = sigsetjmp(t.top, 1);
    if (how != 0) {
        t.in_kernel = 0;
        if (how == 1) report_signal(t);
        return false;
    }
    t.in_kernel = 1;
    L.body(L.ctx);
    t.in_kernel = 0;
    arrive(t, t.B->bar, EXITED, 0, 0, 0, end_of_block);
    return !L.fault.load();
}

// A cooperative block starts when release_next_block reaches its rank (last block first).
inline bool wait_for_start(Thread& t) {
    Launch& L = *t.L;
    const unsigned rank = unsigned(L.nblocks - 1 - t.block);
    unsigned r;
    while ((r = L.released.load()) <= rank && !L.fault.load()) futex_wait(&L.released, r, 100000000L);
    return !L.fault.load();
}

inline void* worker(void* arg) {
    Thread& t = *static_cast<Thread*>(arg);
    Launch& L = *t.L;
    self = &t;
    // Asynchronous signals belong to the Python thread.
    sigset_t all;
    sigfillset(&all);
    for (int s : SIGNALS) sigdelset(&all, s);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    constexpr size_t ALT = 64 * 1024;
    void* alt = mmap(nullptr, ALT, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    stack_t ss{}, old_ss{};
    ss.ss_sp = alt;
    ss.ss_size = ALT;
    sigaltstack(&ss, &old_ss);

    threadIdx = uint3{unsigned(t.tid % L.block.x), unsigned(t.tid / L.block.x % L.block.y),
                      unsigned(t.tid / L.block.x / L.block.y)};
    blockDim = L.block;
    gridDim = L.grid;
    if (L.cooperative) {
        if (wait_for_start(t)) run_block(t, t.block);
    } else {
        for (unsigned long long bi = 0; bi < L.nblocks && run_block(t, bi); ++bi) {}
    }
    t.state.store(FINISHED);
    L.progress.fetch_add(1, std::memory_order_relaxed);
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&old_ss, nullptr);
    munmap(alt, ALT);
    if (L.live.fetch_sub(1) == 1) futex_wake_all(&L.live);
    return nullptr;
}

// ---- the watchdog: the launching thread watches for threads that spin forever ----

// Whether the launch looks stuck right now: some thread keeps calling
// __nanosleep (its count moved since the last look, in seen[]) and every
// other thread waits at a barrier or has returned, so nothing can change
// what the spinners wait for.
inline bool looks_stuck(Launch& L, unsigned* seen) {
    if (L.cooperative && L.released.load() < L.nblocks) return false;  // a block has yet to start
    bool spinning = false, busy = false;
    for (int i = 0; i < L.nworkers; ++i) {
        Thread& t = L.threads[i];
        const unsigned sleeps = t.sleeps.load(std::memory_order_relaxed);
        const int kind = t.state.load() & STATE_MASK;
        if (kind == SLEEPING && sleeps != seen[i]) spinning = true;
        else if (kind == RUNNING || kind == SLEEPING) busy = true;  // computing (maybe after one sleep)
        seen[i] = sleeps;
    }
    return spinning && !busy;
}

// What each resident block does, for the hang message.
inline void report_hang(Launch& L) {
    char msg[4096];
    int pos = snprintf(msg, sizeof msg,
                       "kernel %s: hang: for %.1f s threads spun in __nanosleep while no other thread ran or passed "
                       "a barrier (a grid barrier that some block never reaches%s?):",
                       L.name, L.spin_timeout_s, L.cooperative ? "" : ", or one in a launch that is not cooperative");
    for (int b = 0; b < L.nresident && pos < int(sizeof msg) - 300; ++b) {
        Block& B = L.blocks[b];
        char where[128];
        fmt_coords(where, sizeof where, B.threads[0].block, L.grid);
        int spinner = -1, returned = 0;
        for (int i = 0; i < L.nthreads; ++i) {
            const int kind = B.threads[i].state.load() & STATE_MASK;
            if (kind == SLEEPING && spinner < 0) spinner = i;
            returned += kind == FINISHED || kind == EXITED;
        }
        if (spinner >= 0) {
            const int s = B.threads[spinner].state.load();
            pos += snprintf(msg + pos, sizeof msg - pos, " block %s spins at line %u (thread %d);", where,
                            unsigned(s) >> STATE_SHIFT, spinner);
        } else if (returned == L.nthreads) {
            pos += snprintf(msg + pos, sizeof msg - pos, " block %s returned;", where);
        } else {
            pos += snprintf(msg + pos, sizeof msg - pos, " block %s waits at a barrier;", where);
        }
    }
    set_fault(L, msg);
}

// Waits until every worker has left, failing the launch if it looks stuck
// for spin_timeout_s; lets a cooperative block start when the last one to
// start has run alone for a second (it computes, or spins without __nanosleep).
inline void watch(Launch& L) {
    unsigned* seen = new unsigned[L.nworkers]();
    unsigned long long progress = L.progress.load();
    unsigned released = L.released.load();
    double quiet_since = now_s(), released_at = quiet_since;
    for (unsigned live; (live = L.live.load()) != 0;) {
        futex_wait(&L.live, live, 50000000L);
        if (L.fault.load()) continue;  // the workers are stopping
        const double now = now_s();
        if (L.cooperative) {
            const unsigned r = L.released.load();
            if (r != released) released = r, released_at = now;
            else if (r < L.nblocks && now - released_at > 1.0) release_next_block(L);
        }
        const unsigned long long p = L.progress.load();
        if (!looks_stuck(L, seen) || p != progress) quiet_since = now, progress = p;
        else if (now - quiet_since >= L.spin_timeout_s) report_hang(L);
    }
    delete[] seen;
}

// ---- a launch ----

// Maps a block's dynamic shared memory (its end 16-byte aligned before a
// PROT_NONE page, the slack between filled with the canary) and sets up its
// barrier, warps and threads. False if the memory cannot be mapped.
inline bool setup_block(Launch& L, Block& B, int index) {
    B.L = &L;
    const size_t rounded = (L.shmem + 15) & ~size_t(15);
    const size_t data_pages = (rounded + PAGE - 1) / PAGE;
    B.map_len = (data_pages + 1) * PAGE;
    void* map = mmap(nullptr, B.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return false;
    B.map = static_cast<unsigned char*>(map);
    mprotect(B.map + data_pages * PAGE, PAGE, PROT_NONE);
    B.dyn = B.map + data_pages * PAGE - rounded;
    B.slack = rounded - L.shmem;
    memset(B.dyn + L.shmem, CANARY, B.slack);
    poison_shared(B);

    B.bar.size = L.nthreads;
    B.nwarps = (L.nthreads + 31) / 32;
    B.warps = new Warp[B.nwarps];
    for (int w = 0; w < B.nwarps; ++w) B.warps[w].lanes = B.warps[w].bar.size = L.nthreads - 32 * w < 32 ? L.nthreads - 32 * w : 32;
    B.threads = L.threads + size_t(index) * L.nthreads;
    for (int i = 0; i < L.nthreads; ++i) {
        Thread& t = B.threads[i];
        t.L = &L, t.B = &B, t.tid = i, t.lane = i % 32, t.warp = &B.warps[i / 32];
        t.block = L.cooperative ? unsigned(index) : 0;
    }
    return true;
}

inline void free_blocks(Launch& L) {
    for (int i = 0; i < L.nresident; ++i) {
        delete[] L.blocks[i].warps;
        if (L.blocks[i].map) munmap(L.blocks[i].map, L.blocks[i].map_len);
    }
    delete[] L.blocks;
    delete[] L.threads;
}

// Starts the workers, watches them and joins them.
inline void start_and_join(Launch& L) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    L.live.store(L.nworkers);
    int started = 0;
    for (; started < L.nworkers; ++started)
        if (pthread_create(&L.threads[started].handle, &attr, worker, &L.threads[started]) != 0) {
            char msg[256];
            snprintf(msg, sizeof msg, "kernel %s: cannot start thread %d of %d", L.name, started, L.nworkers);
            set_fault(L, msg);
            break;
        }
    pthread_attr_destroy(&attr);
    if (started < L.nworkers && L.live.fetch_sub(L.nworkers - started) == unsigned(L.nworkers - started))
        futex_wake_all(&L.live);
    watch(L);
    for (int i = 0; i < started; ++i) pthread_join(L.threads[i].handle, nullptr);
}

// Runs the grid; returns 0, 1 with a fault message in err (and the faulting
// address in *addr, 0 if none), or 2 with a message for a launch refused.
inline int run(const char* name, const unsigned* dims, unsigned long long shmem, int cooperative,
               void (*body)(void*), void* ctx, char* err, unsigned long long errlen, unsigned long long* addr,
               double timeout_s, double spin_timeout_s) {
    Launch L;
    L.name = name;
    L.grid = dim3(dims[0], dims[1], dims[2]);
    L.block = dim3(dims[3], dims[4], dims[5]);
    L.nthreads = int(dims[3] * dims[4] * dims[5]);
    L.nblocks = (unsigned long long)dims[0] * dims[1] * dims[2];
    L.cooperative = cooperative != 0;
    L.body = body, L.ctx = ctx, L.timeout_s = timeout_s, L.spin_timeout_s = spin_timeout_s;
    L.shmem = shmem;
    *addr = 0;
    if (L.nthreads < 1 || L.nthreads > 1024 || L.nblocks < 1) {
        snprintf(err, errlen, "kernel %s: bad launch configuration", name);
        return 2;
    }
    if (L.cooperative && L.nblocks * L.nthreads > MAX_LAUNCH_THREADS) {
        snprintf(err, errlen, "kernel %s: a cooperative launch of %llu threads: the emulator runs at most %llu",
                 name, L.nblocks * L.nthreads, MAX_LAUNCH_THREADS);
        return 2;
    }
    if (L.cooperative && n_shared_objects > 0) {
        snprintf(err, errlen, "kernel %s: cooperative kernels must use dynamic shared memory only in the emulator "
                 "(its module has %d static __shared__ object(s))", name, n_shared_objects);
        return 2;
    }
    L.nresident = L.cooperative ? int(L.nblocks) : 1;
    L.nworkers = L.nresident * L.nthreads;
    L.blocks = new Block[L.nresident];
    L.threads = new Thread[L.nworkers];
    for (int i = 0; i < L.nresident; ++i)
        if (!setup_block(L, L.blocks[i], i)) {
            snprintf(err, errlen, "kernel %s: cannot map %llu bytes of shared memory", name, shmem);
            free_blocks(L);
            return 2;
        }
    if (L.cooperative) L.released.store(1);  // the last block starts first

    struct sigaction sa {};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 4; ++i) sigaction(SIGNALS[i], &sa, &previous[i]);
    start_and_join(L);
    for (int i = 0; i < 4; ++i) sigaction(SIGNALS[i], &previous[i], nullptr);

    int rc = 0;
    if (L.fault.load()) {
        snprintf(err, errlen, "%s", L.message);
        *addr = L.fault_addr;
        rc = 1;
    }
    free_blocks(L);
    return rc;
}

// ---- the generated launchers: unpack void** args into the kernel's parameters ----
template <typename... A>
struct Call {
    void (*f)(A...);
    void** args;
};
template <typename... A, size_t... I>
inline void call_impl(Call<A...>& c, std::index_sequence<I...>) {
    c.f(*static_cast<std::remove_cv_t<A>*>(c.args[I])...);
}
template <typename... A>
inline void call(void* p) {
    call_impl(*static_cast<Call<A...>*>(p), std::index_sequence_for<A...>{});
}
template <typename... A>
inline int launch(const char* name, void (*f)(A...), const unsigned* dims, unsigned long long shmem, int cooperative,
                  void** args, char* err, unsigned long long errlen, unsigned long long* addr, double timeout_s,
                  double spin_timeout_s) {
    Call<A...> c{f, args};
    return run(name, dims, shmem, cooperative, call<A...>, &c, err, errlen, addr, timeout_s, spin_timeout_s);
}

// Parameter descriptions for Python: "p:f4" (pointer to float), "p:" (void or
// struct pointee), "i:4", "u:8", "f:4", "s:16" (a struct by value), comma-separated.
template <typename E>
inline const char* dtype_code() {
    using U = std::remove_cv_t<E>;
    if constexpr (std::is_same_v<U, bool>) return "b1";
    else if constexpr (std::is_floating_point_v<U>) return sizeof(U) == 4 ? "f4" : sizeof(U) == 8 ? "f8" : "";
    else if constexpr (std::is_integral_v<U>) {
        static const char* s[] = {"", "i1", "i2", "", "i4", "", "", "", "i8"};
        static const char* u[] = {"", "u1", "u2", "", "u4", "", "", "", "u8"};
        return std::is_signed_v<U> ? s[sizeof(U)] : u[sizeof(U)];
    } else return "";
}
template <typename A>
inline void describe(char*& out, char* end) {
    using U = std::remove_cv_t<A>;
    int n;
    if constexpr (std::is_pointer_v<U>) n = snprintf(out, end - out, "p:%s,", dtype_code<std::remove_pointer_t<U>>());
    else if constexpr (std::is_same_v<U, bool>) n = snprintf(out, end - out, "u:1,");
    else if constexpr (std::is_floating_point_v<U>) n = snprintf(out, end - out, "f:%zu,", sizeof(U));
    else if constexpr (std::is_integral_v<U> || std::is_enum_v<U>)
        n = snprintf(out, end - out, "%s:%zu,", std::is_signed_v<U> ? "i" : "u", sizeof(U));
    else n = snprintf(out, end - out, "s:%zu,", sizeof(U));
    out += n;
}
template <typename... A>
inline const char* signature(void (*)(A...)) {
    static char buf[2048];
    char* out = buf;
    *out = 0;
    (describe<A>(out, buf + sizeof buf), ...);
    return buf;
}

}  // namespace cudaemu

extern "C" __attribute__((visibility("default"))) int cudaemu_set_shared_objects(const unsigned long long* addr,
                                                                                 const unsigned long long* size, int n) {
    if (n > ::cudaemu::MAX_SHARED_OBJECTS) return -1;
    for (int i = 0; i < n; ++i) {
        ::cudaemu::shared_objects[i] = reinterpret_cast<unsigned char*>(addr[i]);
        ::cudaemu::shared_sizes[i] = size[i];
    }
    ::cudaemu::n_shared_objects = n;
    return 0;
}
