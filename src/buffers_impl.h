/* A NumPy data-memory handler that keeps freed large blocks for the next allocation of the same size.
 *
 * A training step allocates the same arrays step after step (activations, gradients, scratch) and frees
 * them again.  glibc returns large blocks to the system (munmap, heap trimming), so every step faults
 * all their pages in again on first touch: on a 2-core machine ~800 faults per LeNet-5 step and up to
 * ~30% of its wall time.  fastconv's fit / evaluate / predict install this handler (NumPy's
 * PyDataMem_SetHandler, for the calling context only) for the duration of the call, so blocks freed
 * during a step are reused by the next; at the end of the call the most recently freed blocks, up to a bound, stay parked for the next call
 * (the rest are freed).
 *
 * Every block carries a 64-byte header holding its size (NumPy passes a size to free, but the header
 * is what a block is matched on, so a block is only reused for a request of exactly its size).  Blocks
 * under FC_BUF_MIN_BYTES go straight to malloc / free.  A spin lock guards the cache (NumPy may allocate
 * or free without the GIL; the critical sections are a few dozen instructions).  calloc and realloc are passed through (with the header).
 */
#ifndef FC_BUFFERS_IMPL_H
#define FC_BUFFERS_IMPL_H

#include <stdint.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <stdlib.h>
#include <string.h>

#define FC_BUF_HEADER 64  /* a cache line: the data of a fresh block start 64-byte aligned */
#define FC_BUF_SLOTS 256

typedef struct {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr, size_t size);
} fc_buf_allocator;  /* NumPy's PyDataMemAllocator (version 1) */

typedef struct {
    char name[127];
    uint8_t version;
    fc_buf_allocator allocator;
} fc_buf_handler;  /* NumPy's PyDataMem_Handler */

typedef struct {
    char lock;              /* a spin lock (GCC atomics: no pthread on every platform) */
    int open;               /* 1 while a fastconv call runs: freed blocks are kept */
    int n;                  /* cached blocks */
    size_t bytes, limit, min_bytes;
    long long hits, misses;
    void *ptr[FC_BUF_SLOTS];  /* the blocks (header included) */
    size_t size[FC_BUF_SLOTS];
} fc_buf_cache;

static fc_buf_cache fc_buf = {0, 0, 0, 0, 0, (size_t)-1, 0, 0, {0}, {0}};  /* closed: min_bytes = SIZE_MAX skips the lock */

static void *fc_buf_wrap(void *raw, size_t size)
{
    if (raw == NULL) return NULL;
    *(size_t *)raw = size;
    return (char *)raw + FC_BUF_HEADER;
}

static void fc_buf_lock(void)
{
    while (__atomic_test_and_set(&fc_buf.lock, __ATOMIC_ACQUIRE))
        ;
}

static void fc_buf_unlock(void) { __atomic_clear(&fc_buf.lock, __ATOMIC_RELEASE); }

/* Drop entry i, keeping the others in the order they were freed (oldest first); lock held. */
static void fc_buf_remove(int i)
{
    fc_buf.bytes -= fc_buf.size[i];
    fc_buf.n--;
    memmove(fc_buf.ptr + i, fc_buf.ptr + i + 1, (size_t)(fc_buf.n - i) * sizeof(void *));
    memmove(fc_buf.size + i, fc_buf.size + i + 1, (size_t)(fc_buf.n - i) * sizeof(size_t));
}

static void *fc_buf_malloc(void *ctx, size_t size)
{
    (void)ctx;
    if (size > SIZE_MAX - FC_BUF_HEADER) return NULL;
    if (size >= fc_buf.min_bytes) {
        void *hit = NULL;
        fc_buf_lock();
        if (fc_buf.open) {
            for (int i = fc_buf.n - 1; i >= 0; i--) {  /* the most recently freed first */
                if (fc_buf.size[i] == size) {
                    hit = fc_buf.ptr[i];
                    fc_buf_remove(i);
                    break;
                }
            }
            if (hit) fc_buf.hits++; else fc_buf.misses++;
        }
        fc_buf_unlock();
        if (hit) return (char *)hit + FC_BUF_HEADER;
    }
    void *raw = NULL;
#if defined(_WIN32)
    raw = malloc(size + FC_BUF_HEADER);  /* no posix_memalign; realloc and free must see malloc's blocks */
#else
    if (posix_memalign(&raw, 64, size + FC_BUF_HEADER) != 0) raw = NULL;
#endif
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (raw != NULL && size >= ((size_t)1 << 22)) {  /* as NumPy's default allocator does */
        size_t off = 4096u - (size_t)raw % 4096u;
        madvise((char *)raw + off, size + FC_BUF_HEADER - off, MADV_HUGEPAGE);
    }
#endif
    return fc_buf_wrap(raw, size);
}

static void *fc_buf_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    if (elsize && nelem > (SIZE_MAX - FC_BUF_HEADER) / elsize) return NULL;
    size_t size = nelem * elsize;
    return fc_buf_wrap(calloc(1, size + FC_BUF_HEADER), size);
}

static void fc_buf_free(void *ctx, void *ptr, size_t ignored)
{
    (void)ctx; (void)ignored;
    if (ptr == NULL) return;
    void *raw = (char *)ptr - FC_BUF_HEADER;
    size_t size = *(size_t *)raw;
    if (size >= fc_buf.min_bytes) {
        /* kept; when full, the blocks freed longest ago make room (shapes that stopped repeating) */
        void *drop[FC_BUF_SLOTS];
        int ndrop = 0, kept = 0;
        fc_buf_lock();
        if (fc_buf.open && size <= fc_buf.limit) {
            while (fc_buf.n > 0 && (fc_buf.n == FC_BUF_SLOTS || size > fc_buf.limit - fc_buf.bytes)) {
                drop[ndrop++] = fc_buf.ptr[0];
                fc_buf_remove(0);
            }
            fc_buf.ptr[fc_buf.n] = raw;
            fc_buf.size[fc_buf.n] = size;
            fc_buf.n++;
            fc_buf.bytes += size;
            kept = 1;
        }
        fc_buf_unlock();
        for (int i = 0; i < ndrop; i++) free(drop[i]);
        if (kept) return;
    }
    free(raw);
}

static void *fc_buf_realloc(void *ctx, void *ptr, size_t new_size)
{
    if (ptr == NULL) return fc_buf_malloc(ctx, new_size);
    if (new_size > SIZE_MAX - FC_BUF_HEADER) return NULL;
    void *raw = realloc((char *)ptr - FC_BUF_HEADER, new_size + FC_BUF_HEADER);
    return fc_buf_wrap(raw, new_size);
}

static fc_buf_handler fc_buf_handler_v1 = {
    "fastconv_reuse", 1, {NULL, fc_buf_malloc, fc_buf_calloc, fc_buf_realloc, fc_buf_free}};

/* Free the blocks freed longest ago until at most `keep` bytes stay cached; returns how many were freed.
 * Open or closed alike: a closed cache's blocks wait, unused, for the next open (see fc_buf_set_open). */
static int fc_buf_trim(size_t keep)
{
    void *drop[FC_BUF_SLOTS];
    int n = 0;
    fc_buf_lock();
    while (fc_buf.n > 0 && fc_buf.bytes > keep) {
        drop[n++] = fc_buf.ptr[0];
        fc_buf_remove(0);
    }
    fc_buf_unlock();
    for (int i = 0; i < n; i++) free(drop[i]);
    return n;
}

/* Open (keep freed blocks of at least min_bytes, up to limit bytes in all) or close the cache.  Closing
 * stops keeping and serving blocks; the blocks already kept stay parked, unused, for the next open
 * (a predict called again gets its activations' pages without faulting them in), and fc_buf_trim bounds
 * or frees them. */
static void fc_buf_set_open(int open, size_t limit, size_t min_bytes)
{
    fc_buf_lock();
    if (open) {
        fc_buf.limit = limit;
        fc_buf.min_bytes = min_bytes < 1 ? 1 : min_bytes;
    } else {
        fc_buf.min_bytes = (size_t)-1;
    }
    fc_buf.open = open;
    fc_buf_unlock();
}

#endif
