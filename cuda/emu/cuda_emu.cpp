// Runtime of the host CUDA emulation: fibers, block scheduler, collectives, launcher, memory API.
#include "cuda_emu.h"
#include "emu_api.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#if defined(MTFM_EMU_UCONTEXT) || !defined(__x86_64__)
#define MTFM_EMU_USE_UCONTEXT 1
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define MTFM_EMU_HAVE_ASAN 1
#endif

extern "C" {
uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;
}

#if !defined(MTFM_EMU_USE_UCONTEXT)
// void mtfm_emu_ctx_switch(void** saveSp, void* newSp): saves callee-saved registers, MXCSR and the
// x87 control word on the current stack, stores the stack pointer, switches to newSp and restores.
// A new fiber's stack is prepared so that the final `ret` enters mtfm_emu_fiber_trampoline with the
// fiber in r12 and its C entry point in r13.
asm(R"(
    .text
    .globl mtfm_emu_ctx_switch
    .hidden mtfm_emu_ctx_switch
    .type mtfm_emu_ctx_switch,@function
mtfm_emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size mtfm_emu_ctx_switch, .-mtfm_emu_ctx_switch

    .globl mtfm_emu_fiber_trampoline
    .hidden mtfm_emu_fiber_trampoline
    .type mtfm_emu_fiber_trampoline,@function
mtfm_emu_fiber_trampoline:
    movq %r12, %rdi
    call *%r13
    ud2
    .size mtfm_emu_fiber_trampoline, .-mtfm_emu_fiber_trampoline
    .section .note.GNU-stack,"",@progbits
    .text
)");
extern "C" void mtfm_emu_ctx_switch(void** saveSp, void* newSp);
extern "C" void mtfm_emu_fiber_trampoline();
#endif

#if !defined(MTFM_EMU_ASAN)
// Bounds of the section holding every static __shared__ variable (provided by the linker).
extern "C" char __start_mtfm_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_mtfm_emu_shared[] __attribute__((weak, visibility("hidden")));
#endif

namespace {

enum class State { Runnable, AtBarrier, AtWarp, Exited };

struct Fiber {
#if defined(MTFM_EMU_USE_UCONTEXT)
    ucontext_t uc;
#else
    void* sp = nullptr;
#endif
    char* stack = nullptr;  // usable region (guard page below it)
    size_t stackSize = 0;
    void* fakeStack = nullptr;
    State state = State::Runnable;
    uint3 tid{};
    int linear = 0;
    const char* file = nullptr;
    int line = 0;
    int op = 0;
    unsigned mask = 0;
    unsigned long long value = 0;
    int arg = 0;
    int width = 32;
    unsigned long long result = 0;
};

struct Kernel {
    std::string name;
    void (*fn)();
    mtfm_emu::Invoker invoker;
};

std::vector<Kernel>& registry() {
    static std::vector<Kernel> r;
    return r;
}

constexpr size_t kStackSize = 64 * 1024;

struct Scheduler {
    std::vector<Fiber> fibers;
    std::vector<char*> stackPool;  // mmap'd regions, reused across blocks and launches
    size_t pageSize = 4096;
#if defined(MTFM_EMU_USE_UCONTEXT)
    ucontext_t schedUc{};
#else
    void* schedSp = nullptr;
#endif
    void* schedFakeStack = nullptr;
    const void* schedStackBottom = nullptr;
    size_t schedStackSize = 0;
    Fiber* current = nullptr;
    void (*fn)() = nullptr;
    mtfm_emu::Invoker invoker = nullptr;
    void** params = nullptr;
    std::string error;
    bool aborted = false;
    unsigned char* dynShared = nullptr;
    size_t dynBytes = 0;
    int schedule = 0;
    unsigned long long seed = 0x9E3779B97F4A7C15ull;
    unsigned long long launchCount = 0;
};

Scheduler g;
std::mutex g_launchMutex;
thread_local std::string t_lastError;

int fail(std::string msg) {
    t_lastError = std::move(msg);
    return 1;
}

void init_schedule_from_env() {
    static bool done = false;
    if (done) return;
    done = true;
    const char* s = getenv("MTFM_EMU_SCHEDULE");
    if (!s || !*s || !strcmp(s, "forward")) return;
    if (!strcmp(s, "reverse")) {
        g.schedule = 1;
    } else if (!strncmp(s, "random", 6)) {
        g.schedule = 2;
        if (s[6] == ':') g.seed = strtoull(s + 7, nullptr, 10);
    } else {
        fprintf(stderr, "mtfm_cuda_emu: MTFM_EMU_SCHEDULE='%s' is not forward, reverse or random[:seed]; using forward\n",
                s);
    }
}

char* stack_for(size_t i) {
    while (g.stackPool.size() <= i) {
        g.pageSize = (size_t)sysconf(_SC_PAGESIZE);
        size_t total = kStackSize + g.pageSize;
        void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return nullptr;
        mprotect(m, g.pageSize, PROT_NONE);  // guard page: a stack overflow faults cleanly
        g.stackPool.push_back(static_cast<char*>(m) + g.pageSize);
    }
    return g.stackPool[i];
}

void fiber_main(Fiber* f);

#if defined(MTFM_EMU_USE_UCONTEXT)
void fiber_entry_uc(unsigned hi, unsigned lo) {
    fiber_main(reinterpret_cast<Fiber*>(((uintptr_t)hi << 32) | (uintptr_t)lo));
}
#endif

// Switch from the scheduler into fiber f until it yields.
void resume(Fiber* f) {
    g.current = f;
    threadIdx = f->tid;
#if defined(MTFM_EMU_HAVE_ASAN)
    __sanitizer_start_switch_fiber(&g.schedFakeStack, f->stack, f->stackSize);
#endif
#if defined(MTFM_EMU_USE_UCONTEXT)
    swapcontext(&g.schedUc, &f->uc);
#else
    mtfm_emu_ctx_switch(&g.schedSp, f->sp);
#endif
#if defined(MTFM_EMU_HAVE_ASAN)
    __sanitizer_finish_switch_fiber(g.schedFakeStack, nullptr, nullptr);
#endif
    g.current = nullptr;
}

// Switch from the running fiber back to the scheduler (never returns if the fiber has exited).
void yield_to_scheduler(Fiber* f) {
#if defined(MTFM_EMU_HAVE_ASAN)
    __sanitizer_start_switch_fiber(f->state == State::Exited ? nullptr : &f->fakeStack, g.schedStackBottom,
                                   g.schedStackSize);
#endif
#if defined(MTFM_EMU_USE_UCONTEXT)
    swapcontext(&f->uc, &g.schedUc);
#else
    mtfm_emu_ctx_switch(&f->sp, g.schedSp);
#endif
#if defined(MTFM_EMU_HAVE_ASAN)
    __sanitizer_finish_switch_fiber(f->fakeStack, &g.schedStackBottom, &g.schedStackSize);
#endif
    threadIdx = f->tid;
}

void fiber_main(Fiber* f) {
#if defined(MTFM_EMU_HAVE_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &g.schedStackBottom, &g.schedStackSize);
#endif
    threadIdx = f->tid;
    g.invoker(g.fn, g.params);
    f->state = State::Exited;
    yield_to_scheduler(f);
    abort();  // unreachable: an exited fiber is never resumed
}

bool prepare_fiber(Fiber* f, size_t index) {
    f->stack = stack_for(index);
    if (!f->stack) return false;
    f->stackSize = kStackSize;
    f->fakeStack = nullptr;
#if defined(MTFM_EMU_HAVE_ASAN)
    ASAN_UNPOISON_MEMORY_REGION(f->stack, f->stackSize);
#endif
#if defined(MTFM_EMU_USE_UCONTEXT)
    memset(&f->uc, 0, sizeof(f->uc));
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = f->stackSize;
    f->uc.uc_link = nullptr;
    uintptr_t p = reinterpret_cast<uintptr_t>(f);
    makecontext(&f->uc, reinterpret_cast<void (*)()>(fiber_entry_uc), 2, (unsigned)(p >> 32), (unsigned)p);
    // Otherwise ASan's swapcontext interceptor clears the shadow of the whole stack on every switch.
    f->uc.uc_stack.ss_sp = nullptr;
    f->uc.uc_stack.ss_size = 0;
#else
    uintptr_t top = (reinterpret_cast<uintptr_t>(f->stack) + f->stackSize) & ~(uintptr_t)15;
    auto* sp = reinterpret_cast<unsigned long long*>(top - 80);
    unsigned mxcsr;
    unsigned short fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    sp[0] = (unsigned long long)mxcsr | ((unsigned long long)fpucw << 32);
    sp[1] = 0;                                                      // r15
    sp[2] = 0;                                                      // r14
    sp[3] = reinterpret_cast<unsigned long long>(&fiber_main);     // r13
    sp[4] = reinterpret_cast<unsigned long long>(f);               // r12
    sp[5] = 0;                                                      // rbx
    sp[6] = 0;                                                      // rbp
    sp[7] = reinterpret_cast<unsigned long long>(&mtfm_emu_fiber_trampoline);
    f->sp = sp;
#endif
    return true;
}

std::string where(const Fiber& f) {
    char buf[512];
    snprintf(buf, sizeof buf, "thread (%u,%u,%u) of block (%u,%u,%u) at %s:%d", f.tid.x, f.tid.y, f.tid.z, blockIdx.x,
             blockIdx.y, blockIdx.z, f.file ? f.file : "?", f.line);
    return buf;
}

void abort_launch(std::string msg) {
    if (!g.aborted) {
        g.aborted = true;
        g.error = std::move(msg);
    }
}

const char* op_name(int op) {
    static const char* names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                                  "__ballot_sync", "__any_sync", "__all_sync", "__syncwarp",
                                  "mtfm_mma_bf16_16816"};
    return op >= 0 && op < 9 ? names[op] : "warp collective";
}

float bf16_to_float(unsigned h) {
    const unsigned u = (h & 0xffffu) << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

// m16n8k16 bf16 mma of a full warp (mask checked by the caller): gathers A (16×16), B (16×8) and C (16×8) from the
// lanes' fragments in the PTX layout (g = lane >> 2, t = lane & 3; the lower 16 bits of a register hold the
// lower-index element), computes D = A·B + C with exact products summed in double, each element rounded once to fp32,
// and scatters D back.
void resolve_mma_bf16(Fiber* const lanes[32]) {
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; ++l) {
        const auto* op = reinterpret_cast<const mtfm_emu::MmaOperands*>(static_cast<uintptr_t>(lanes[l]->value));
        const int g = l >> 2, t = l & 3;
        for (int r = 0; r < 4; ++r) {
            const int row = g + (r & 1) * 8, col = 2 * t + (r >> 1) * 8;
            A[row][col] = bf16_to_float(op->a[r]);
            A[row][col + 1] = bf16_to_float(op->a[r] >> 16);
        }
        for (int r = 0; r < 2; ++r) {
            const int k = 2 * t + r * 8;
            B[k][g] = bf16_to_float(op->b[r]);
            B[k + 1][g] = bf16_to_float(op->b[r] >> 16);
        }
        for (int r = 0; r < 4; ++r) C[g + (r >> 1) * 8][2 * t + (r & 1)] = op->d[r];
    }
    float D[16][8];
    for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 8; ++j) {
            double s = C[i][j];
            for (int k = 0; k < 16; ++k) s += (double)A[i][k] * (double)B[k][j];
            D[i][j] = (float)s;
        }
    for (int l = 0; l < 32; ++l) {
        const auto* op = reinterpret_cast<const mtfm_emu::MmaOperands*>(static_cast<uintptr_t>(lanes[l]->value));
        const int g = l >> 2, t = l & 3;
        for (int r = 0; r < 4; ++r) op->d[r] = D[g + (r >> 1) * 8][2 * t + (r & 1)];
    }
}

// Completes the warp collective that fiber f waits in, once every lane named in its mask waits too.
void try_resolve_warp(Fiber* f) {
    const int n = (int)g.fibers.size();
    const int warp = f->linear / 32;
    const unsigned mask = f->mask;
    const int width = f->width;
    if (width <= 0 || width > 32 || (width & (width - 1)) != 0) {
        abort_launch(std::string(op_name(f->op)) + ": width " + std::to_string(width) +
                     " is not a power of two in [1,32] (" + where(*f) + ")");
        return;
    }
    if (mask == 0) {
        abort_launch(std::string(op_name(f->op)) + " with an empty mask (" + where(*f) + ")");
        return;
    }
    if (!(mask & (1u << (f->linear % 32)))) {
        abort_launch(std::string(op_name(f->op)) + ": calling lane is not in its own mask (" + where(*f) + ")");
        return;
    }
    Fiber* lanes[32] = {};
    for (int b = 0; b < 32; ++b) {
        if (!(mask & (1u << b))) continue;
        int t = warp * 32 + b;
        if (t >= n) {
            char buf[160];
            snprintf(buf, sizeof buf, " with mask 0x%08x names lane %d of warp %d, but the block has only %d threads (",
                     mask, b, warp, n);
            abort_launch(std::string(op_name(f->op)) + buf + where(*f) + ")");
            return;
        }
        Fiber* o = &g.fibers[t];
        if (o->state == State::Exited) {
            abort_launch(std::string(op_name(f->op)) + ": lane " + std::to_string(b) +
                         " named in the mask has already exited (" + where(*f) + ")");
            return;
        }
        if (o->state != State::AtWarp) return;  // not there yet
        if (o->mask != mask || o->op != f->op || o->line != f->line || strcmp(o->file, f->file) != 0) {
            abort_launch("divergent warp collectives: " + std::string(op_name(f->op)) + " " + where(*f) + " vs " +
                         op_name(o->op) + " " + where(*o));
            return;
        }
        lanes[b] = o;
    }
    if (f->op == mtfm_emu::kMmaBf16) {
        resolve_mma_bf16(lanes);
        for (int b = 0; b < 32; ++b) lanes[b]->state = State::Runnable;
        return;
    }
    unsigned long long ballot = 0;
    for (int b = 0; b < 32; ++b)
        if (lanes[b] && lanes[b]->value) ballot |= 1ull << b;
    for (int b = 0; b < 32; ++b) {
        Fiber* o = lanes[b];
        if (!o) continue;
        int src = b;
        int seg = b & ~(width - 1);
        switch (f->op) {
            case mtfm_emu::kShflIdx: src = seg + (o->arg & (width - 1)); break;
            case mtfm_emu::kShflUp: src = (b - seg) >= o->arg ? b - o->arg : b; break;
            case mtfm_emu::kShflDown: src = (b - seg) + o->arg < width ? b + o->arg : b; break;
            case mtfm_emu::kShflXor: {
                int s = b ^ o->arg;
                src = (s < 0 || s >= 32 || (s & ~(width - 1)) > seg) ? b : s;
                break;
            }
            default: break;
        }
        if (f->op <= mtfm_emu::kShflXor) {
            if (!lanes[src]) {
                abort_launch(std::string(op_name(f->op)) + ": lane " + std::to_string(b) + " reads lane " +
                             std::to_string(src) + ", which is not in the mask (" + where(*o) + ")");
                return;
            }
            o->result = lanes[src]->value;
        } else if (f->op == mtfm_emu::kBallot) {
            o->result = ballot;
        } else if (f->op == mtfm_emu::kAny) {
            o->result = ballot != 0;
        } else if (f->op == mtfm_emu::kAll) {
            o->result = ballot == (unsigned long long)mask;
        } else {
            o->result = 0;
        }
    }
    for (int b = 0; b < 32; ++b)
        if (lanes[b]) lanes[b]->state = State::Runnable;
}

unsigned long long next_random() {
    g.seed ^= g.seed << 13;
    g.seed ^= g.seed >> 7;
    g.seed ^= g.seed << 17;
    return g.seed;
}

void run_block() {
    const int n = (int)g.fibers.size();
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    if (g.schedule == 1) std::reverse(order.begin(), order.end());
    for (;;) {
        if (g.schedule == 2)
            for (int i = n - 1; i > 0; --i) std::swap(order[i], order[next_random() % (unsigned long long)(i + 1)]);
        bool ran = false;
        for (int i : order) {
            Fiber* f = &g.fibers[i];
            if (f->state != State::Runnable) continue;
            ran = true;
            resume(f);
            if (g.aborted) return;
            if (f->state == State::AtWarp) {
                try_resolve_warp(f);
                if (g.aborted) return;
            }
        }
        if (ran) continue;
        // Nobody can run: everyone has exited, or a block barrier is complete, or it is a deadlock.
        Fiber* atBarrier = nullptr;
        Fiber* atWarp = nullptr;
        int exited = 0;
        for (auto& f : g.fibers) {
            if (f.state == State::Exited) ++exited;
            else if (f.state == State::AtBarrier && !atBarrier) atBarrier = &f;
            else if (f.state == State::AtWarp && !atWarp) atWarp = &f;
        }
        if (exited == n) return;
        if (atWarp) {
            abort_launch("deadlock: " + std::string(op_name(atWarp->op)) + " " + where(*atWarp) +
                         " waits for lanes that never arrive" +
                         (atBarrier ? " (another thread waits at __syncthreads " + where(*atBarrier) + ")" : ""));
            return;
        }
        for (auto& f : g.fibers) {
            if (f.state != State::AtBarrier) continue;
            if (f.line != atBarrier->line || strcmp(f.file, atBarrier->file) != 0) {
                abort_launch("divergent __syncthreads: " + where(*atBarrier) + " and " + where(f));
                return;
            }
        }
        // __syncthreads_or: every waiting thread gets the OR of the predicates given at the barrier (exited threads
        // count as arrived with 0; plain __syncthreads gives 0).
        unsigned long long any = 0;
        for (auto& f : g.fibers)
            if (f.state == State::AtBarrier) any |= f.value;
        for (auto& f : g.fibers)
            if (f.state == State::AtBarrier) {
                f.result = any != 0;
                f.state = State::Runnable;
            }
    }
}

}  // namespace

extern "C" void mtfm_emu_register_kernel(const char* name, void (*fn)(), mtfm_emu::Invoker invoker) {
    registry().push_back(Kernel{name, fn, invoker});
}

extern "C" int mtfm_emu_syncthreads_or(int predicate, const char* file, int line) {
    Fiber* f = g.current;
    if (!f) {
        fprintf(stderr, "mtfm_cuda_emu: __syncthreads called outside a kernel (%s:%d)\n", file, line);
        abort();
    }
    f->state = State::AtBarrier;
    f->file = file;
    f->line = line;
    f->value = predicate != 0;
    yield_to_scheduler(f);
    return (int)f->result;
}

extern "C" void mtfm_emu_syncthreads(const char* file, int line) { mtfm_emu_syncthreads_or(0, file, line); }

extern "C" unsigned long long mtfm_emu_warp_collective(int op, unsigned mask, unsigned long long value, int arg,
                                                       int width, const char* file, int line) {
    Fiber* f = g.current;
    if (!f) {
        fprintf(stderr, "mtfm_cuda_emu: warp collective called outside a kernel (%s:%d)\n", file, line);
        abort();
    }
    f->state = State::AtWarp;
    f->op = op;
    f->mask = mask;
    f->value = value;
    f->arg = arg;
    f->width = width;
    f->file = file;
    f->line = line;
    yield_to_scheduler(f);
    return f->result;
}

extern "C" void mtfm_emu_mma_bf16_16816(float* d, const unsigned* a, const unsigned* b, const char* file, int line) {
    mtfm_emu::MmaOperands op{d, a, b};
    mtfm_emu_warp_collective(mtfm_emu::kMmaBf16, 0xffffffffu, static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(&op)),
                             0, 32, file, line);
}

extern "C" void* mtfm_emu_dynamic_shared(void) { return g.dynShared; }

extern "C" {

void* mtfm_emu_malloc(size_t bytes) {
    void* p = nullptr;  // 256-byte aligned like cuMemAlloc (the pool carves aligned blocks out of slabs)
    if (posix_memalign(&p, 256, bytes == 0 ? 1 : bytes) != 0) p = nullptr;
    if (!p) fail("mtfm_emu_malloc: out of host memory for " + std::to_string(bytes) + " bytes");
    return p;
}

void mtfm_emu_free(void* p) { free(p); }

int mtfm_emu_memcpy(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return 0;
    if (!dst || !src) return fail("mtfm_emu_memcpy: null pointer");
    memmove(dst, src, bytes);
    return 0;
}

int mtfm_emu_memset_d32(void* dst, unsigned value, size_t count) {
    if (count == 0) return 0;
    if (!dst) return fail("mtfm_emu_memset_d32: null pointer");
    auto* d = static_cast<unsigned*>(dst);
    for (size_t i = 0; i < count; ++i) d[i] = value;
    return 0;
}

int mtfm_emu_set_schedule(int mode, unsigned long long seed) {
    if (mode < 0 || mode > 2) return fail("mtfm_emu_set_schedule: mode " + std::to_string(mode) + " is not 0, 1 or 2");
    std::lock_guard<std::mutex> lock(g_launchMutex);
    init_schedule_from_env();
    g.schedule = mode;
    g.seed = seed ? seed : 0x9E3779B97F4A7C15ull;
    return 0;
}

int mtfm_emu_get_schedule(void) {
    std::lock_guard<std::mutex> lock(g_launchMutex);
    init_schedule_from_env();
    return g.schedule;
}

int mtfm_emu_kernel_count(void) { return (int)registry().size(); }
const char* mtfm_emu_kernel_name(int index) {
    return index >= 0 && index < (int)registry().size() ? registry()[index].name.c_str() : nullptr;
}
int mtfm_emu_has_kernel(const char* name) {
    for (auto& k : registry())
        if (k.name == name) return 1;
    return 0;
}

const char* mtfm_emu_last_error(void) { return t_lastError.c_str(); }

int mtfm_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                    unsigned sharedBytes, void** params) {
    if (!name) return fail("mtfm_emu_launch: kernel name is null");
    const Kernel* k = nullptr;
    for (auto& r : registry())
        if (r.name == name) k = &r;
    if (!k) return fail(std::string("mtfm_emu_launch: no kernel named '") + name + "' is registered");
    if (gx == 0 || gy == 0 || gz == 0)
        return fail(std::string("mtfm_emu_launch(") + name + "): grid has a zero dimension (" + std::to_string(gx) + "," +
                    std::to_string(gy) + "," + std::to_string(gz) + ")");
    if (bx == 0 || by == 0 || bz == 0 || (unsigned long long)bx * by * bz > 1024 || bz > 64)
        return fail(std::string("mtfm_emu_launch(") + name + "): invalid block (" + std::to_string(bx) + "," +
                    std::to_string(by) + "," + std::to_string(bz) + "); at most 1024 threads");
    if (gy > 65535 || gz > 65535)
        return fail(std::string("mtfm_emu_launch(") + name + "): gridDim.y/z above 65535");

    std::lock_guard<std::mutex> lock(g_launchMutex);
    init_schedule_from_env();
    ++g.launchCount;
    const int n = (int)(bx * by * bz);
    g.fn = k->fn;
    g.invoker = k->invoker;
    g.params = params;
    g.aborted = false;
    g.error.clear();
    g.fibers.assign(n, Fiber{});
    gridDim = dim3(gx, gy, gz);
    blockDim = dim3(bx, by, bz);
    for (unsigned z = 0; z < gz && !g.aborted; ++z)
        for (unsigned y = 0; y < gy && !g.aborted; ++y)
            for (unsigned x = 0; x < gx && !g.aborted; ++x) {
                blockIdx = uint3{x, y, z};
#if !defined(MTFM_EMU_ASAN)
                if (__start_mtfm_emu_shared && __stop_mtfm_emu_shared)
                    memset(__start_mtfm_emu_shared, 0xFF, (size_t)(__stop_mtfm_emu_shared - __start_mtfm_emu_shared));
#endif
                free(g.dynShared);
                g.dynShared = nullptr;
                if (sharedBytes) {
                    g.dynShared = static_cast<unsigned char*>(malloc(sharedBytes));
                    memset(g.dynShared, 0xFF, sharedBytes);  // NaN floats, -1 ints
                }
                for (int i = 0; i < n; ++i) {
                    Fiber& f = g.fibers[i];
                    f = Fiber{};
                    f.linear = i;
                    f.tid = uint3{(unsigned)i % bx, ((unsigned)i / bx) % by, (unsigned)i / (bx * by)};
                    if (!prepare_fiber(&f, (size_t)i)) {
                        abort_launch("mtfm_emu_launch: cannot map a fiber stack");
                        break;
                    }
                }
                if (!g.aborted) run_block();
            }
    free(g.dynShared);
    g.dynShared = nullptr;
    g.fibers.clear();
    if (g.aborted) return fail(std::string("kernel ") + name + ": " + g.error);
    return 0;
}

}  // extern "C"
