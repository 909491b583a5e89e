/* runtime.h: the C runtime linked into netcc and into every library it emits.
 *
 *   float x[1 * 3 * 8 * 8], w[4 * 3 * 3 * 3], y[1 * 4 * 8 * 8];
 *   rt_conv p = rt_conv_make(1, 3, 8, 8, 4, 3, 1, 1);   // n c h w oc k stride pad
 *   rt_conv2d_ref(&p, x, w, NULL, y);
 *
 *   rt_array f;
 *   if (rt_npy_read("x.npy", &f, err, sizeof err) != 0) fprintf(stderr, "%s\n", err);
 *
 * Everything here is plain C with no global mutable state: kernels take all
 * sizes as arguments, and readers report errors into a caller buffer instead of
 * printing or exiting, because this code runs inside other people's programs.
 * Layout is NCHW; convolution weights are [oc, c, k, k]; linear weights are
 * [out, in] as in torch.nn.Linear.
 */
#ifndef NETCC_RUNTIME_H
#define NETCC_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- shapes ---------------------------------------------------------- */

typedef struct rt_conv {
	int n, c, h, w;  /* input */
	int oc, k;       /* output channels, square kernel */
	int stride, pad; /* symmetric */
	int oh, ow;      /* output, derived by rt_conv_make */
} rt_conv;

rt_conv rt_conv_make(int n, int c, int h, int w, int oc, int k, int stride, int pad);

/* Pooling windows: padding counts as -inf for max and as zero (included in
 * the divisor, PyTorch's count_include_pad=True) for average. */
typedef struct rt_pool {
	int n, c, h, w;
	int k, stride, pad;
	int oh, ow;
} rt_pool;

rt_pool rt_pool_make(int n, int c, int h, int w, int k, int stride, int pad);

/* ---- reference kernels: forward ---------------------------------------
 * Straightforward loops, the oracle every optimised path is tested against.
 * Outputs are overwritten, never accumulated into. */

void rt_conv2d_ref(const rt_conv *p, const float *x, const float *w, const float *b, float *y);
/* y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel; hw = h * w. */
void rt_batchnorm_ref(int n, int c, int hw, const float *x, const float *mean, const float *var,
                      const float *gamma, const float *beta, float eps, float *y);
void rt_relu_ref(size_t count, const float *x, float *y);
void rt_add_ref(size_t count, const float *a, const float *b, float *y);
/* y = 1 / (1 + exp(-x)), and dx = dy * y * (1 - y) from the result y:
 * ops.def's UNARY sigmoid (x and y, or y and dx, may be the same array) */
void rt_sigmoid(size_t count, const float *x, float *y);
void rt_sigmoid_grad(size_t count, const float *y, const float *dy, float *dx);
void rt_maxpool_ref(const rt_pool *p, const float *x, float *y);
void rt_avgpool_ref(const rt_pool *p, const float *x, float *y);
void rt_global_avgpool_ref(int n, int c, int hw, const float *x, float *y);
/* y[n, out] = x[n, in] . w[out, in]^T + b[out] (b may be NULL) */
void rt_linear_ref(int n, int in, int out, const float *x, const float *w, const float *b,
                   float *y);
void rt_softmax_ref(int n, int c, const float *x, float *y);
/* y = x[:, :, ::s, ::s]; oh = (h + s - 1) / s */
void rt_subsample_ref(int n, int c, int h, int w, int s, const float *x, float *y);
/* y has c + before + after channels; the new ones are zero. */
void rt_pad_channels_ref(int n, int c, int hw, int before, int after, const float *x, float *y);

/* ---- reference kernels: training ---------------------------------------
 * BatchNorm in training mode is split so every piece has one output:
 *   stats = [mean[c], var[c]] of the batch (biased variance, as normalisation uses),
 *   y     = rt_batchnorm_ref(x, stats, stats + c, gamma, beta),
 *   the running statistics move by PyTorch's rule (unbiased variance),
 *   dparams = [dgamma[c], dbeta[c]], then dx from dparams. */

void rt_bn_stats_ref(int n, int c, int hw, const float *x, float *stats);
/* running = (1 - momentum) * running + momentum * batch; var uses m / (m - 1), m = n * hw */
void rt_bn_running_update_ref(int c, int m, float momentum, const float *stats, float *run_mean,
                              float *run_var);
void rt_bn_grad_params_ref(int n, int c, int hw, const float *x, const float *dy,
                           const float *stats, float eps, float *dparams);
void rt_bn_grad_input_ref(int n, int c, int hw, const float *x, const float *dy, const float *stats,
                          const float *gamma, const float *dparams, float eps, float *dx);

void rt_conv2d_grad_input_ref(const rt_conv *p, const float *dy, const float *w, float *dx);
/* db may be NULL */
void rt_conv2d_grad_weight_ref(const rt_conv *p, const float *x, const float *dy, float *dw,
                               float *db);
/* y is the forward output: dx = dy where y > 0 */
void rt_relu_grad_ref(size_t count, const float *y, const float *dy, float *dx);
/* the gradient goes to the first maximum in scan order, as PyTorch does */
void rt_maxpool_grad_ref(const rt_pool *p, const float *x, const float *dy, float *dx);
void rt_avgpool_grad_ref(const rt_pool *p, const float *dy, float *dx);
void rt_global_avgpool_grad_ref(int n, int c, int hw, const float *dy, float *dx);
void rt_linear_grad_input_ref(int n, int in, int out, const float *dy, const float *w, float *dx);
/* db may be NULL */
void rt_linear_grad_weight_ref(int n, int in, int out, const float *x, const float *dy, float *dw,
                               float *db);
/* y is the forward output */
void rt_softmax_grad_ref(int n, int c, const float *y, const float *dy, float *dx);
void rt_subsample_grad_ref(int n, int c, int h, int w, int s, const float *dy, float *dx);
void rt_pad_channels_grad_ref(int n, int c, int hw, int before, int after, const float *dy,
                              float *dx);
/* Mean cross-entropy over the batch of softmax(logits); writes the loss and
 * d(loss)/d(logits). Returns -1 (and writes nothing) if a label is outside
 * [0, c). */
int rt_softmax_xent_ref(int n, int c, const float *logits, const int32_t *labels, float *loss,
                        float *dlogits);
/* PyTorch's SGD: v = momentum * v + (g + wd * w); w -= lr * v */
void rt_sgd_momentum_ref(size_t count, float *w, const float *g, float *v, float lr, float momentum,
                         float weight_decay);

/* ---- threads and GEMM --------------------------------------------------
 * A pool belongs to one instance (no global state): its workers are made
 * once and wait between calls, so no call creates threads. Work is split
 * into tasks that write disjoint outputs in a fixed order, so results do
 * not depend on the number of threads. A NULL pool runs on the caller. */

/* bytes (64-byte aligned), in huge pages where the system grants them
 * (runtime/memory.c); released with free() */
void *rt_alloc_large(size_t bytes);
void *rt_alloc_large_zero(size_t bytes); /* rt_alloc_large, zeroed */
/* whether the system hands out huge pages on request (transparent huge
 * pages not "never") */
bool rt_huge_pages_granted(void);
/* a copy of a library's embedded weights in huge pages (floats + 1, the
 * last 0), or NULL where that brings nothing; released with free() */
float *rt_weights_to_huge_pages(const float *embedded, size_t floats);

typedef struct rt_threads rt_threads;
rt_threads *rt_threads_create(int threads); /* in all, the caller included; <= 0: one per CPU */
void rt_threads_destroy(rt_threads *p);
int rt_threads_count(const rt_threads *p);
typedef void rt_task_fn(void *ctx, int task, int tasks);
/* fn(ctx, i, n) for every i in [0, n), on the pool's threads and the caller;
 * returns when all are done. One caller at a time per pool. */
void rt_threads_run(rt_threads *p, rt_task_fn *fn, void *ctx, int n);
/* Task task of tasks's even share of n items: [*lo, *hi) */
void rt_task_range(int n, int task, int tasks, int *lo, int *hi);

/* Scratch for the GEMM, owned by the pool so that a run allocates nothing:
 * a slot of at most rt_gemm_scratch_floats() floats per thread (NULL when
 * none is free or floats is larger: the caller allocates), and one shared
 * buffer kept between runs (NULL when in use). */
float *rt_threads_scratch_take(rt_threads *p, size_t floats, int *slot);
void rt_threads_scratch_give(rt_threads *p, int slot);
/* A free one of `slots` slots (at most 32), claimed as a bit of *used, or
 * -1 where all are taken; rt_slot_give frees it (a slot < 0: nothing).
 * The pool's scratch slots are claimed so, and a kernel's own slices of
 * its scratch can be. */
int rt_slot_take(_Atomic unsigned *used, int slots);
void rt_slot_give(_Atomic unsigned *used, int slot);
float *rt_threads_shared_take(rt_threads *p, size_t floats);
void rt_threads_shared_give(rt_threads *p);
size_t rt_gemm_scratch_floats(void);
/* A one-thread pool in caller memory (rt_threads_inline_bytes() of it,
 * 64-byte aligned) with its scratch: nothing is allocated, and
 * rt_threads_destroy is not needed. */
size_t rt_threads_inline_bytes(void);
rt_threads *rt_threads_inline(void *mem);

/* Profiling (netcc profile): a forward compiled with profile marks adds
 * each node's seconds to seconds[id] (n entries) of the pool it runs on;
 * NULL stops. rt_profile_mark is what that code calls. */
void rt_threads_profile(rt_threads *p, double *seconds, int n);
void rt_profile_mark(rt_threads *p, int id);
/* The measured single-precision FMA peak of this CPU, GFLOP/s on the
 * given number of threads (a register-only loop, about 0.2 s). */
double rt_peak_gflops(int threads);
/* The measured bandwidth of reading memory, GB/s on the given number of
 * threads (256 MB, best of three passes, about 0.1 s; runtime/kernels/peak.c):
 * where the FMA peak stays and this falls, the host's memory is shared
 * with a busier neighbour. */
double rt_read_gbs(int threads);

/* What a GEMM does to each result c[i][j] as it stores it: add
 * add[i * ldc + j] (laid out as C: a residual, or C itself to accumulate
 * onto its old values), add bias[i], then relu. */
typedef struct rt_epilogue {
	const float *add;  /* or NULL */
	const float *bias; /* per row of C, or NULL */
	int relu;
} rt_epilogue;

/* Packs rows k0..k0+kc of columns n0..n0+nc of a K x N operand B into dst
 * as the GEMM wants it (see rt_gemm_pack_b): lets a convolution hand its
 * input to the GEMM without an im2col buffer. Called from several threads
 * at once, on pieces at multiples of rt_gemm_nr(): it must be thread-safe. */
typedef void rt_pack_b_fn(const void *ctx, int k0, int kc, int n0, int nc, float *dst);

typedef struct rt_gemm_b {
	const float
	    *data; /* dense B: element (k, j) at data[k * ld + j], or data[j * ld + k] if trans */
	int ld, trans;
	rt_pack_b_fn *pack; /* if set, used instead of data */
	const void *ctx;
} rt_gemm_b;

/* C[m x n] (row stride ldc) = A[m x k] . B[k x n], then the epilogue. A is
 * row-major (element (i, k) at a[i * lda + k]), or transposed when trans_a
 * is RT_GEMM_A_TRANS (at a[k * lda + i]), or RT_GEMM_A_PACKED: already in
 * the GEMM's own layout, from rt_gemm_pack_a (weights, packed once when
 * they are prepared). Deterministic, and identical whatever the pool. */
enum { RT_GEMM_A_ROWS = 0, RT_GEMM_A_TRANS = 1, RT_GEMM_A_PACKED = 2 };
void rt_gemm(rt_threads *p, int m, int n, int k, const float *a, int lda, int trans_a,
             const rt_gemm_b *b, float *c, int ldc, const rt_epilogue *ep);
/* The packed layout is that of a register tile of mr rows: the kernel
 * set's that reads it (rt_gemm_mr() here; kset.h for any other), so netcc
 * lays out prepared weights for a target it does not run on. */
int rt_gemm_mr(void);
size_t rt_gemm_packed_a_floats(int mr, int m, int k);
void rt_gemm_pack_a(int mr, int m, int k, const float *a, int lda, float *dst);
/* where element (i, p) of an m x k A goes in that layout (zero the rest) */
size_t rt_gemm_packed_a_offset(int mr, int m, int k, int i, int p);
void rt_gemm_packed_a_scale_rows(int mr, int m, int k, int r0, int r1, const float *scale,
                                 float *dst);
/* The same on the calling thread only, for a caller that already runs as
 * one of p's tasks; p lends its scratch. Same results as rt_gemm. */
void rt_gemm_serial(rt_threads *p, int m, int n, int k, const float *a, int lda, int trans_a,
                    const rt_gemm_b *b, float *c, int ldc, const rt_epilogue *ep);
/* The panel layout pack callbacks must produce: nc columns of B rows
 * k0..k0+kc, in panels of rt_gemm_nr() columns, each panel kc x nr
 * row-major, the last panel zero-padded to nr. */
int rt_gemm_nr(void);
void rt_gemm_pack_b(const rt_gemm_b *b, int k0, int kc, int n0, int nc, float *dst);

/* ---- kernels for compiled code ----------------------------------------
 * Same semantics as the reference kernels; scratch is caller-provided. */

/* How rt_conv2d and the gradients below run, beside Winograd and the
 * packed GEMM (kernels of their own): the algorithm pass asks
 * rt_conv2d_algo and the others, the runtime's own tests of what fits,
 * at compile time, records the answer in the graph and passes it to the
 * kernel, which does not choose for itself. RT_CONV_ALGO_DIRECT runs the
 * direct kernel (runtime/kernels/conv_direct.c), or the GEMM where that finds no
 * memory for its panels; so the scratch a kernel takes is the GEMM's. */
typedef enum rt_conv_algo { RT_CONV_ALGO_GEMM, RT_CONV_ALGO_DIRECT } rt_conv_algo;
rt_conv_algo rt_conv2d_algo(const rt_conv *p, bool residual);
rt_conv_algo rt_conv2d_grad_input_algo(const rt_conv *p);
rt_conv_algo rt_conv2d_grad_weight_algo(const rt_conv *p);

size_t rt_conv2d_scratch_floats(const rt_conv *p);
/* y = relu?(conv(x, w) + b + res); b and res may be NULL; res may be y
 * itself (the residual accumulated in place); algo an rt_conv_algo. */
void rt_conv2d(rt_threads *t, const rt_conv *p, const float *x, const float *w, const float *b,
               const float *res, float *y, int relu, int algo);
/* The same with the weights packed for the GEMM once, when they are
 * prepared: wp of rt_gemm_packed_a_floats(mr, oc, c * k * k) floats from
 * rt_conv_weight_pack, which packs [oc x kdim] weights for a tile of mr
 * rows (the set's that runs them), each output channel's first
 * multiplied by gamma / sqrt(var + eps) when gamma is given (BatchNorm
 * folding, with no folded copy kept). */
void rt_conv_weight_pack(int mr, int oc, int kdim, const float *w, const float *gamma,
                         const float *var, float eps, float *dst);
void rt_conv2d_packed(rt_threads *t, const rt_conv *p, const float *x, const float *wp,
                      const float *b, const float *res, float *y, int relu);
/* A 3x3 convolution with stride 1 or 2 computed directly
 * (runtime/kernels/conv_direct.c), for weights as rt_conv2d takes them and no
 * residual: where it fits (output channels a multiple of 16, stride 1
 * with more than one input channel, its scratch within a GEMM's),
 * rt_conv2d_algo chooses it; false when no memory was to be had, y then
 * partly written. */
bool rt_conv2d_direct_fits(const rt_conv *p);
bool rt_conv2d_direct(rt_threads *t, const rt_conv *p, const float *x, const float *w,
                      const float *b, float *y, int relu);
/* Inference's direct convolution, with the weights prepared once as
 * [oc / 16][c * k * k][16] (rt_direct_weight: blocks of 16 output channels,
 * each a contiguous stream; each output channel's BatchNorm-folded first
 * when gamma and var are given, as rt_bn_fold_weight): any square kernel,
 * no residual, output channels a multiple of 16, stride 2 or more than
 * one input channel, the padded image within a scratch slot
 * (rt_conv2d_direct_prepared_fits). rt_conv2d_direct_prepared runs it, or
 * where no scratch was to be had (rt_conv2d_direct_try is false then) the
 * same sums serially without memory (rt_conv2d_direct_prepared_serial). */
bool rt_conv2d_direct_prepared_fits(const rt_conv *p);
void rt_direct_weight(int oc, int kdim, const float *w, const float *gamma, const float *var,
                      float eps, float *dst);
void rt_conv2d_direct_prepared(rt_threads *t, const rt_conv *p, const float *x, const float *wt,
                               const float *b, float *y, int relu);
bool rt_conv2d_direct_try(rt_threads *t, const rt_conv *p, const float *x, const float *wt,
                          const float *b, float *y, int relu);
void rt_conv2d_direct_prepared_serial(const rt_conv *p, const float *x, const float *wt,
                                      const float *b, float *y, int relu);
/* Its weight gradient over the images [n0, n1), into dw (overwritten) on
 * the calling thread, where it fits (stride 1 or 2, output channels a
 * multiple of 16); false, dw unwritten, when no memory was to be had */
bool rt_conv2d_grad_weight_direct_fits(const rt_conv *p);
bool rt_conv2d_grad_weight_direct(rt_threads *t, const rt_conv *p, const float *x, const float *dy,
                                  int n0, int n1, float *dw);
/* Its input gradient where the input channels are a multiple of 16;
 * false, dx partly written, when no memory was to be had */
bool rt_conv2d_grad_input_direct_fits(const rt_conv *p);
bool rt_conv2d_grad_input_direct(rt_threads *t, const rt_conv *p, const float *dy, const float *w,
                                 float *dx);
/* rt_maxpool_ref's results, vectorised and threaded */
void rt_maxpool(rt_threads *t, const rt_pool *p, const float *x, float *y);
/* 3x3, stride 1, by Winograd F(m x m, 3x3), m = 4 or 2 (runtime/kernels/winograd.c):
 * u from rt_winograd_weight with the same m, scratch of
 * rt_winograd_scratch_floats; the epilogue as rt_conv2d's. */
bool rt_winograd_fits(const rt_conv *p);
size_t rt_winograd_scratch_floats(const rt_conv *p, int m);
/* u: rt_winograd_weight_floats(mr, m, oc, c) floats ((m + 2)^2 matrices
 * oc x c in the GEMMs' packed layout for a tile of mr rows, as
 * rt_conv_weight_pack) */
size_t rt_winograd_weight_floats(int mr, int m, int rows, int cols);
/* gamma, var (or NULL): the weights BatchNorm-folded first, as rt_bn_fold_weight */
void rt_winograd_weight(rt_threads *t, int mr, int m, int oc, int c, const float *w,
                        const float *gamma, const float *var, float eps, float *u);
void rt_conv2d_winograd(rt_threads *t, const rt_conv *p, int m, const float *x, const float *u,
                        const float *b, const float *res, float *y, int relu, float *scratch);
/* Training by Winograd, for 3x3 stride-1 pad-1 layers (rt_winograd_grad_fits):
 * the input gradient from ut = rt_winograd_weight_t(w), the weight gradient
 * straight from x and dy. Each takes its own amount of scratch. */
bool rt_winograd_grad_fits(const rt_conv *p);
/* F(4x4, 3x3), of rt_winograd_weight_floats(mr, 4, c, oc) floats */
void rt_winograd_weight_t(rt_threads *t, int mr, int oc, int c, const float *w, float *ut);
size_t rt_winograd_grad_input_scratch_floats(const rt_conv *p);
void rt_conv2d_grad_input_winograd(rt_threads *t, const rt_conv *p, const float *dy,
                                   const float *ut, float *dx, float *scratch);
size_t rt_winograd_grad_weight_scratch_floats(const rt_conv *p);
void rt_conv2d_grad_weight_winograd(rt_threads *t, const rt_conv *p, const float *x,
                                    const float *dy, float *dw, float *scratch);
void rt_linear(rt_threads *t, int n, int in, int out, const float *x, const float *w,
               const float *b, float *y, int relu);
/* rt_linear with the weights prepared by rt_conv_weight_pack(mr, out, in, w, ...):
 * read once per sample, so for small batches (netcc packs them at batch 1) */
void rt_linear_packed(rt_threads *t, int n, int in, int out, const float *x, const float *wp,
                      const float *b, float *y, int relu);
/* y = relu?(batchnorm(x) + res); res may be NULL */
void rt_batchnorm(rt_threads *t, int n, int c, int hw, const float *x, const float *mean,
                  const float *var, const float *gamma, const float *beta, float eps,
                  const float *res, float *y, int relu);
/* pad_channels(subsample(x, stride), before, after) in one pass, the images
 * split over the threads */
void rt_shortcut_a(rt_threads *t, int n, int c, int h, int w, int stride, int before, int after,
                   const float *x, float *y);
/* BatchNorm folding: w'[o] = w[o] * gamma[o] / sqrt(var[o] + eps) over per
 * values each; b' = (b - mean) * gamma / sqrt(var + eps) + beta, b may be NULL. */
void rt_bn_fold_weight(int oc, int per, const float *w, const float *gamma, const float *var,
                       float eps, float *y);
void rt_bn_fold_bias(int oc, const float *gamma, const float *beta, const float *mean,
                     const float *var, const float *b, float eps, float *y);

/* ---- training kernels for compiled code --------------------------------
 * Same semantics as the rt_*_ref training kernels, built on GEMMs where
 * the work is. Outputs are overwritten; scratch is caller-provided. */

size_t rt_conv2d_grad_scratch_floats(const rt_conv *p); /* for the input gradient */
void rt_conv2d_grad_input(rt_threads *t, const rt_conv *p, const float *dy, const float *w,
                          float *dx, float *scratch, int algo);
size_t rt_conv2d_grad_weight_scratch_floats(const rt_conv *p);
void rt_conv2d_grad_weight(rt_threads *t, const rt_conv *p, const float *x, const float *dy,
                           float *dw, float *scratch, int algo);
/* db[c] = sum of dy over n and hw (conv and linear biases; hw = 1 for linear) */
void rt_bias_grad(int n, int c, int hw, const float *dy, float *db);
void rt_bn_stats(rt_threads *t, int n, int c, int hw, const float *x, float *stats);
/* relu_y (or NULL): the result of a relu whose gradient is fused in, dy
 * taken only where relu_y > 0 (rt_relu_grad_ref's values: the same bits as
 * that gradient stored first and passed as dy) */
void rt_bn_grad_params(rt_threads *t, int n, int c, int hw, const float *x, const float *dy,
                       const float *relu_y, const float *stats, float eps, float *dparams);
void rt_bn_grad_input(rt_threads *t, int n, int c, int hw, const float *x, const float *dy,
                      const float *relu_y, const float *stats, const float *gamma,
                      const float *dparams, float eps, float *dx);
/* dx = relu_y > 0 ? dy (+ dres, where not NULL) : 0, threaded: the
 * values of rt_relu_grad_ref on dy (+ dres) */
void rt_relu_grad(rt_threads *t, int64_t count, const float *relu_y, const float *dy,
                  const float *dres, float *dx);
/* rt_subsample_grad_ref's values, threaded, in one pass */
void rt_subsample_grad(rt_threads *t, int n, int c, int h, int w, int s, const float *dy,
                       float *dx);
void rt_linear_grad_input(rt_threads *t, int n, int in, int out, const float *dy, const float *w,
                          float *dx);
void rt_linear_grad_weight(rt_threads *t, int n, int in, int out, const float *x, const float *dy,
                           float *dw);
/* rt_sgd_momentum_ref with the learning rate read from *lr */
void rt_sgd_step(size_t count, float *w, const float *g, float *v, const float *lr, float momentum,
                 float weight_decay);
/* Data-parallel training: every gradient of a training step passes through
 * rt_grad_allreduce before its update, last layer first; with a hook on
 * the step's pool, the hook replaces grad[0..n) by its average over the
 * processes (left: how many gradients follow in this step, 0 for the
 * last, so a hook may gather buckets and reduce them when left is 0 or a
 * bucket is full; every pointer it was given stays valid until the step's
 * last call returns). Without a hook, nothing happens. */
typedef void rt_reduce_fn(void *ctx, float *grad, int64_t n, int left);
void rt_threads_set_reduce(rt_threads *p, rt_reduce_fn *fn, void *ctx);
void rt_threads_reduce(rt_threads *p, float *grad, int64_t n, int left);
void rt_grad_allreduce(rt_threads *p, int64_t n, const float *g, float *out, int left);
/* BatchNorm's [2, C] batch statistics (mean, biased variance) of equal
 * shares of a batch, into the whole batch's, through the same hook (two
 * calls of C, left 0); out != stats. */
void rt_bn_stats_allreduce(rt_threads *p, int c, const float *stats, float *out);
/* Mean softmax cross-entropy, and its gradient, as separate kernels. */
void rt_xent_loss(int n, int c, const float *logits, const int32_t *labels, float *loss);
void rt_xent_grad(int n, int c, const float *logits, const int32_t *labels, float *dlogits);

/* ---- generated libraries --------------------------------------------------
 * A library netcc emits is a descriptor plus exported wrappers around the
 * rt_instance calls. Every field is 8 bytes wide so the code generator lays
 * the descriptor out without padding rules. */

enum {
	RT_OK = 0,
	RT_ERR_ARG = 1,        /* a NULL or misaligned pointer */
	RT_ERR_IO = 2,         /* the weights file cannot be read or parsed */
	RT_ERR_WEIGHTS = 3,    /* it does not match the model */
	RT_ERR_NO_WEIGHTS = 4, /* inference before weights were loaded */
	RT_ERR_NOMEM = 5,
	RT_ERR_CPU = 6, /* this CPU lacks what the library's target needs */
};

typedef struct rt_param_desc {
	const char *name;
	int64_t rank;
	int64_t dims[4];
	int64_t offset; /* in floats, into the raw weights */
} rt_param_desc;

/* Weights exist twice over: raw, as a safetensors file has them, and
 * prepared, as the compiled code reads them (BatchNorm folded in, layouts
 * transformed). prepare() turns one into the other when weights load;
 * embedded weights are prepared at compile time. */
typedef void rt_prepare_fn(const float *raw, float *prepared);
typedef void rt_forward_fn(const float *prepared, void *workspace, const float *const *in,
                           float *const *out, rt_threads *threads);

typedef void rt_train_fn(float *state, void *workspace, const void *const *in, float *const *out,
                         rt_threads *threads);

typedef struct rt_model_desc {
	const char *name;
	int64_t n_params;
	const rt_param_desc *params;
	int64_t raw_floats;
	int64_t weight_floats; /* prepared */
	const float *embedded; /* prepared (the training state when trainable); NULL: in a file */
	int64_t workspace_bytes;
	int64_t n_inputs, n_outputs;
	rt_prepare_fn *prepare;
	rt_forward_fn *forward;

	/* Trainable libraries (netcc compile --train) keep a training state:
	 * every param of the training step (weights, BatchNorm statistics,
	 * momentum) at state_params[i].offset. Inference prepares its weights
	 * from the state, gathering raw param i from state offset
	 * eval_from_state[i]. train_step is NULL otherwise. */
	int64_t state_floats;
	int64_t n_state_params;
	const rt_param_desc *state_params;
	const int64_t *eval_from_state;
	int64_t train_workspace_bytes;
	rt_train_fn *train_step;
	int64_t batch, classes;

	/* The target the code was generated for (netcc targets), the CPU
	 * features (RT_CPU_* of kset.h) its code needs, checked before any of
	 * it runs, and the register tile its prepared weights are packed for,
	 * checked against the kernel set linked in. */
	const char *target;
	int64_t cpu_needs;
	int64_t gemm_mr;
} rt_model_desc;

typedef struct rt_instance rt_instance;

/* NULL on failure: rt_instance_error(NULL) then says why, in the thread
 * that called (a CPU without the target's features, no memory). */
rt_instance *rt_instance_create(const rt_model_desc *d);
void rt_instance_destroy(rt_instance *m);
int rt_instance_load_weights(rt_instance *m, const char *path);
int rt_instance_run(rt_instance *m, const float *const *in, float *const *out);
int rt_instance_infer(rt_instance *m, const float *in, float *out);
/* Threads of this instance from now on (NETCC_THREADS, or one per CPU, at first). */
int rt_instance_set_threads(rt_instance *m, int threads);
const char *rt_instance_error(const rt_instance *m);
/* One SGD step on a batch (trainable libraries); labels in [0, classes). */
int rt_instance_train_step(rt_instance *m, const float *input, const int32_t *labels, float lr,
                           float *loss);
/* Weights and BatchNorm statistics (no momentum) as a safetensors file
 * with the names `netcc params` prints: what load_weights and netcc
 * compile --weights read. */
int rt_instance_save_weights(rt_instance *m, const char *path);
/* Data-parallel training (trainable libraries): fn averages each gradient
 * over the processes (rt_reduce_fn above); NULL removes it. */
int rt_instance_set_allreduce(rt_instance *m, rt_reduce_fn *fn, void *ctx);
/* Caller-owned memory: nothing allocated; workspace 64-byte aligned, of
 * rt_model_static_workspace_bytes(arena) bytes: the activations, then a
 * one-thread pool with the GEMM's scratch (NAME_WORKSPACE_SIZE). */
size_t rt_model_static_workspace_bytes(int64_t arena_bytes);
int rt_model_run_raw(const rt_model_desc *d, const float *weights, void *workspace, const float *in,
                     float *out);
/* 0 if this CPU runs d's code; else RT_ERR_CPU, and why into err (may be NULL). */
int rt_model_check_cpu(const rt_model_desc *d, char *err, size_t errlen);
/* The values a weights file may give a parameter, the same for netcc and
 * a library: finite (unless finite is false), and a BatchNorm running
 * variance (a name ending in running_var) not negative. 0, or nonzero
 * with the first offence named in err: file, tensor, index. */
int rt_param_values_check(const char *path, const char *name, const float *v, size_t n, bool finite,
                          char *err, size_t errlen);
/* Reads a safetensors file and prepares it into caller memory
 * (weight_floats floats); err may be NULL. */
int rt_model_read_weights(const rt_model_desc *d, const char *path, float *weights, char *err,
                          size_t errlen);

/* ---- files -----------------------------------------------------------
 * Readers validate everything against the file's real size and write a
 * readable message into err (naming the file and the tensor) on failure,
 * returning nonzero. Writers go through a temporary file and rename, so an
 * output is either complete or absent. */

enum { RT_MAX_RANK = 8 };

typedef enum rt_dtype {
	RT_DTYPE_F32,
	RT_DTYPE_F64,
	RT_DTYPE_I32,
	RT_DTYPE_I64,
	RT_DTYPE_U8,
	RT_DTYPE_F16,  /* IEEE half */
	RT_DTYPE_BF16, /* bfloat16: float32's upper half (no .npy descr) */
} rt_dtype;

const char *rt_dtype_name(rt_dtype t);
size_t rt_dtype_size(rt_dtype t);

/* One array read from an .npy file; data is malloc'd, free with rt_array_free. */
typedef struct rt_array {
	rt_dtype dtype;
	int rank;
	int64_t dims[RT_MAX_RANK];
	size_t count; /* product of dims */
	void *data;
} rt_array;

int rt_npy_read(const char *path, rt_array *out, char *err, size_t errlen);
/* Parses an in-memory .npy image (the fuzzers use this). */
int rt_npy_parse(const void *buf, size_t len, rt_array *out, char *err, size_t errlen);
/* The same with the image named in messages ("w.npz: member 'fc.weight.npy'"). */
int rt_npy_parse_named(const char *name, const void *buf, size_t len, rt_array *out, char *err,
                       size_t errlen);
/* The file's bytes in memory (malloc'd into *image); path only names it
 * in errors. rt_npy_write writes them atomically. */
int rt_npy_encode(const char *path, rt_dtype dtype, int rank, const int64_t *dims, const void *data,
                  void **image, size_t *len, char *err, size_t errlen);
int rt_npy_write(const char *path, rt_dtype dtype, int rank, const int64_t *dims, const void *data,
                 char *err, size_t errlen);
void rt_array_free(rt_array *a);
/* Converts in place to float32 (from f64, f16, bf16, i32, i64, u8); 0 on success. */
int rt_array_to_f32(rt_array *a, char *err, size_t errlen);
/* count values of type t at src (any alignment) as float32 into dst:
 * float64 rounds to nearest (beyond float32's range: infinite), the
 * halves are exact. */
void rt_values_to_f32(rt_dtype t, const void *src, size_t count, float *dst);

/* .npz: NumPy's zip archive of .npy members, as np.savez (stored) and
 * np.savez_compressed (deflated) write it. The arrays keep the archive's
 * order, which is the order np.savez was given them: a state dict's. */
enum { RT_NPZ_MAX_MEMBERS = 1 << 20 };
/* a member's bytes, decompressed: netcc's largest tensor (2^31 float32s) */
#define RT_NPZ_MAX_MEMBER_BYTES (((uint64_t)8 << 30) + 4096)

typedef struct rt_npz_file {
	int n;
	char **names;     /* each member's name less ".npy": np.load's keys */
	rt_array *arrays; /* as rt_npy_read gives them */
} rt_npz_file;

int rt_npz_read(const char *path, rt_npz_file *out, char *err, size_t errlen);
/* Parses an in-memory .npz image (the fuzzers use this). */
int rt_npz_parse(const void *buf, size_t len, rt_npz_file *out, char *err, size_t errlen);
const rt_array *rt_npz_find(const rt_npz_file *f, const char *name);
void rt_npz_free(rt_npz_file *f);

/* safetensors: a little-endian u64 header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v"}}, then the data. */
typedef struct rt_st_tensor {
	const char *name;
	rt_dtype dtype;
	int rank;
	int64_t dims[RT_MAX_RANK];
	size_t count;
	uint64_t offset;  /* where its bytes begin in the data section */
	const void *data; /* points into the file image, aligned as the file is */
} rt_st_tensor;

typedef struct rt_st_file {
	void *image; /* whole file, malloc'd */
	size_t size;
	int n_tensors;
	rt_st_tensor *tensors; /* in header order */
	int n_meta;
	const char **meta_keys, **meta_values;
} rt_st_file;

int rt_st_read(const char *path, rt_st_file *out, char *err, size_t errlen);
int rt_st_parse(void *image, size_t size, rt_st_file *out, char *err, size_t errlen);
const rt_st_tensor *rt_st_find(const rt_st_file *f, const char *name);
const char *rt_st_meta(const rt_st_file *f, const char *key);
void rt_st_free(rt_st_file *f);

/* Tensors to write: float32 unless dtype says otherwise. */
typedef struct rt_st_entry {
	const char *name;
	rt_dtype dtype;
	int rank;
	const int64_t *dims;
	const void *data;
} rt_st_entry;

int rt_st_write(const char *path, const rt_st_entry *entries, int n, const char *const *meta_kv,
                int n_meta, char *err, size_t errlen);
/* The file's bytes in memory (malloc'd into *image), for standard output;
 * path only names it in errors. */
int rt_st_encode(const char *path, const rt_st_entry *entries, int n, const char *const *meta_kv,
                 int n_meta, void **image, size_t *size, char *err, size_t errlen);

/* IDX (MNIST's format), gzip-compressed or not, detected by magic. */
int rt_idx_read(const char *path, rt_array *out, char *err, size_t errlen);
int rt_idx_parse(const void *buf, size_t len, rt_array *out, char *err, size_t errlen);

/* Writes len bytes to path through a temporary beside it + fsync + rename. */
int rt_file_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);
/* The pieces, for outputs others write (a linker): a temporary beside path,
 * PATH.tmp.PID.XXXXXX (*tmp, malloc'd), its descriptor returned; -1 with
 * err set where path exists and is not a regular file (a symbolic link, a
 * device: -o /dev/null would have replaced the device). Temporaries of path
 * whose writer is no longer running are removed first. rt_file_commit
 * gives tmp the usual mode and renames it over path (unlinking it on
 * failure), with mode (0666, 0755) less the umask. */
int rt_file_temp(const char *path, char **tmp, char *err, size_t errlen);
int rt_file_commit(const char *tmp, const char *path, unsigned mode, char *err, size_t errlen);

/* Checked reading, for the format readers: open, take the header, check
 * what it claims against size (where sized: a regular file), then take the
 * data and ask whether anything is left.
 *   rt_reader r;
 *   if (rt_reader_open(&r, path, err, errlen) != 0) return -1;
 *   unsigned char *buf = NULL; size_t len = 0;
 *   rt_reader_take(&r, &buf, &len, 16, err, errlen); // len < 16: truncated
 *   ...
 *   rt_reader_close(&r); */
typedef struct rt_reader {
	FILE *f;
	const char *path;
	int sized;     /* a regular file, whose size is known up front */
	uint64_t size; /* when sized */
	uint64_t pos;  /* bytes read so far */
} rt_reader;
#define RT_READER_DRAIN ((uint64_t)1 << 20)

int rt_reader_open(rt_reader *r, const char *path, char *err, size_t errlen);
/* Appends up to n bytes to *buf (realloc'd) at *len; fewer arrive only at
 * the end of the file, which the caller sees in *len. -1: read error or out
 * of memory, err set. */
int rt_reader_take(rt_reader *r, unsigned char **buf, size_t *len, size_t n, char *err,
                   size_t errlen);
/* Up to n bytes into buf, *got fewer only at the end of the file. */
int rt_reader_read(rt_reader *r, void *buf, size_t n, size_t *got, char *err, size_t errlen);
/* Bytes after what was read: exact for a sized file; for a stream up to
 * RT_READER_DRAIN, *at_least set where it goes on. */
uint64_t rt_reader_rest(rt_reader *r, int *at_least);
void rt_reader_close(rt_reader *r);

/* ---- JSON ---------------------------------------------------------------
 * A strict JSON DOM (RFC 8259), as much as the safetensors header needs:
 * input must be UTF-8, strings hold no NUL, nesting stops at
 * RT_JSON_MAX_DEPTH. Every value and string of a document lives in its one
 * arena and goes with rt_json_doc_free. Object members keep their order,
 * duplicate keys included: which copy wins is the caller's choice.
 *
 *   rt_json_doc d;
 *   rt_json_error e;
 *   if (rt_json_doc_parse(&d, text, len, &e) != 0)
 *           printf("%s at byte %zu\n", e.what, e.offset);
 *   for (const rt_json *m = d.root->first; m; m = m->next) ... m->key ...
 *   rt_json_doc_free(&d);
 */
enum { RT_JSON_MAX_DEPTH = 128 };

typedef enum rt_json_kind {
	RT_JSON_NULL,
	RT_JSON_FALSE,
	RT_JSON_TRUE,
	RT_JSON_NUMBER,
	RT_JSON_STRING,
	RT_JSON_ARRAY,
	RT_JSON_OBJECT,
} rt_json_kind;

typedef struct rt_json rt_json;
struct rt_json {
	rt_json_kind kind;
	bool is_int;     /* a number written as an integer (no fraction or exponent) in int64 */
	const char *key; /* an object's member: its key */
	rt_json *next;   /* the next element or member of the same parent */
	union {
		struct {
			rt_json *first, *last; /* array, object */
			size_t n;
		};
		const char *str; /* string */
		struct {
			double num; /* number: the nearest double */
			int64_t i;  /* exact where is_int */
		};
	};
};

typedef struct rt_json_doc {
	rt_json *root;
	struct rt_json_block *arena;
	bool failed; /* a builder below ran out of memory or was given NULL */
} rt_json_doc;

typedef enum rt_json_status {
	RT_JSON_OK,
	RT_JSON_ERR_SYNTAX,
	RT_JSON_ERR_NUL,      /* \u0000 in a string */
	RT_JSON_ERR_TRAILING, /* a whole value, then more than whitespace */
	RT_JSON_ERR_DEPTH,
	RT_JSON_ERR_MEMORY,
} rt_json_status;

typedef struct rt_json_error {
	rt_json_status code;
	size_t offset;    /* of the byte where parsing stopped */
	const char *what; /* static text, "unterminated string" */
} rt_json_error;

/* Parses all len bytes (any bytes: hostile input is refused, never
 * trusted) into *d, which is overwritten; on failure d holds nothing. */
int rt_json_doc_parse(rt_json_doc *d, const char *text, size_t len, rt_json_error *e);
void rt_json_doc_free(rt_json_doc *d);
/* d->root without whitespace, keys in insertion order: malloc'd and
 * NUL-terminated, *len its length (len may be NULL); NULL where building
 * failed or out of memory. */
char *rt_json_doc_write(const rt_json_doc *d, size_t *len);
/* The first member named key, or NULL. */
const rt_json *rt_json_object_get(const rt_json *o, const char *key);
bool rt_json_utf8_valid(const char *s, size_t len);

/* Building: values live in d. Each returns NULL where memory runs out or an
 * argument is NULL, and marks d failed, so a chain of calls is checked
 * once, by rt_json_doc_write. Keys and strings are copied. */
void *rt_json_doc_alloc(rt_json_doc *d, size_t size, size_t align);
rt_json *rt_json_value_new(rt_json_doc *d, rt_json_kind kind); /* null, booleans, empty */
rt_json *rt_json_string_new(rt_json_doc *d, const char *s);
rt_json *rt_json_int_new(rt_json_doc *d, int64_t v);   /* written exactly, never as a double */
rt_json *rt_json_number_new(rt_json_doc *d, double x); /* NaN and infinities become null */
rt_json *rt_json_array_add(rt_json_doc *d, rt_json *a, rt_json *v);
rt_json *rt_json_object_add(rt_json_doc *d, rt_json *o, const char *key, rt_json *v);

/* ---- deterministic random numbers -------------------------------------- */

typedef struct rt_rng {
	uint64_t s[4];
} rt_rng;

void rt_rng_seed(rt_rng *r, uint64_t seed);
uint64_t rt_rng_next(rt_rng *r);
float rt_rng_uniform(rt_rng *r);                                       /* [0, 1) */
float rt_rng_normal(rt_rng *r);                                        /* mean 0, std 1 */
void rt_rng_normal_fill(rt_rng *r, float *out, size_t n, float scale); /* n draws, times scale */

#endif
