/* fastopt optimizer family: fused, in-place, multi-tensor optimizer steps (torch.optim semantics).
 *
 * One call updates every tensor of a parameter group: the driver computes the per-step scalars of each tensor
 * in double (bias corrections, step sizes), then one OpenMP team sweeps the concatenated element range of all
 * tensors once, so 200 tensors of 5,000 elements cost what one tensor of 1,000,000 does. */
#ifndef FO_OPTIM_H
#define FO_OPTIM_H

#include "fo_common.h"

/* The one list of algorithms: X(name) for each, in id order. Adding an algorithm: one entry here, its kernel body
 * (<name>_chunk in optim_kernels.inc), its per-step scalars and state slots (optim.c). The enum ids, the named
 * entry points, the kernel tables of every instruction set and fo_optim_algo_name() all expand from it.
 * AdamW is FO_ADAM with decoupled_weight_decay. */
#define FO_OPTIM_ALGOS(X) X(sgd) X(adam) X(adamax) X(nadam) X(radam) X(rmsprop) X(adagrad) X(lion) \
    X(adadelta) X(rprop) X(asgd) X(ademamix) X(adan) \
    X(lars) X(lamb) X(sfadamw) X(sfsgd)

#define FO_ALGO_ID(name) FO_ALGO_##name,
enum fo_algo { FO_OPTIM_ALGOS(FO_ALGO_ID) FO_ALGO_COUNT };
#undef FO_ALGO_ID

/* A tensor of at most FO_OPTIM_TILE elements with a norm sweep takes its sums and its step back to back on one
 * thread, while its arrays are still in cache: the step's second read of them moves no memory. Larger ones take
 * the team-wide norm sweep, then the team-wide step. The sums are the same additions either way. */
enum { FO_OPTIM_TILE = 16384 };

/* State a step of `algo` reads and writes under `hp`: bit s = state[s] (s < FO_MAX_SLOTS), FO_NEEDS_AUX = aux. */
enum { FO_MAX_SLOTS = 4, FO_NEEDS_AUX = 1 << FO_MAX_SLOTS };

/* How a state array is stored (fo_tensor.format[s]; see optim_formats.h). NATIVE: the call's dtype, numel elements.
 * The others only with float32 (FO_F32) params, stepped block by block in float32: BF16 numel uint16 bfloat16 values;
 * INT8 numel codes of uint8 and one float32 absmax per FO_QBLOCK_INT8 elements; INT4 two codes per byte (element 2j
 * in the low nibble, ceil(numel / 2) bytes) and one absmax per FO_QBLOCK_INT4 elements. */
enum { FO_STATE_NATIVE = 0, FO_STATE_BF16 = 1, FO_STATE_INT8 = 2, FO_STATE_INT4 = 3, FO_STATE_FORMATS = 4 };

/* How a param or gradient is stored (fo_tensor.param_format, grad_format): NATIVE the call's dtype, BF16 (only
 * with FO_F32 calls) numel uint16 bfloat16 values, decoded to float32 for the step. A bfloat16 param's new float32
 * value x (old value o) is stored by fo_tensor.compensation (see bf16.h): NONE, rounded to nearest even; KAHAN,
 * with the rounding error carried in a bfloat16 buffer comp (s = x - o + c; p = rn(o + s); c = rn(s - (p - o)),
 * optimi's scheme); STOCHASTIC, rounded up with probability (x - down) / (up - down), the 16 random bits of element
 * i bits 16 (i mod 4).. of the (i / 4)-th output of the splitmix64 sequence of key = fo_dropout_key(round_seed ^
 * fo_mix64(step)) (bf16.h fo_bf16_store_stochastic). STOCHASTIC also
 * rounds bfloat16 state (FO_STATE_BF16, of any param) so, slot s with the key of the seed fo_mix64(round_seed) +
 * s + 1; under NONE and KAHAN it is rounded to nearest even. */
enum { FO_ARRAY_NATIVE = 0, FO_ARRAY_BF16 = 1 };
enum { FO_COMP_NONE = 0, FO_COMP_KAHAN = 1, FO_COMP_STOCHASTIC = 2, FO_COMPENSATIONS = 3 };

/* One tensor of a step. Arrays are contiguous, of the call's dtype, `numel` elements, and do not overlap; a state
 * slot with a non-native format is stored as format[s] says. A zero-initialised fo_tensor has native state. */
typedef struct fo_tensor {
    void *param;          /* inout */
    const void *grad;     /* NULL: no gradient this step; the tensor is skipped, its step count unchanged */
    void *state[FO_MAX_SLOTS];   /* inout: optimizer state arrays (see each algorithm), NULL where unused */
    int64_t numel;
    int64_t *step;        /* inout: number of steps taken by this tensor */
    double *aux;          /* inout: scalar state (NAdam mu_product; Schedule-Free: aux[0] lr_max, aux[1]
                           * weight_sum), NULL where unused */
    int fresh;            /* inout: 1 while state[0] holds no history (SGD momentum buffer); cleared by the step */
    int ndim;             /* the param's number of dimensions (LARS adapts only params of 2 or more) */
    double coef[6];       /* scratch: per-step scalars, computed by the driver */
    unsigned char format[FO_MAX_SLOTS];     /* FO_STATE_* of state[s] (0: native) */
    unsigned char is_signed[FO_MAX_SLOTS];  /* INT8/INT4: 1 the signed code map (moments), 0 the unsigned one */
    float *absmax[FO_MAX_SLOTS];            /* inout, INT8/INT4: one float32 scale per block of state[s] */
    unsigned char param_format;   /* FO_ARRAY_* of param (0: the call's dtype) */
    unsigned char grad_format;    /* FO_ARRAY_* of grad */
    unsigned char compensation;   /* FO_COMP_* of a bfloat16 param's store and of bfloat16 state */
    uint16_t *comp;               /* inout, FO_COMP_KAHAN: numel bfloat16 rounding errors of the param */
    uint64_t round_seed;          /* FO_COMP_STOCHASTIC: the tensor's seed of its rounding bits */
} fo_tensor;

/* The one list of hyperparameter fields: R(name) a real, F(name) a flag, in field-index order (the index Python
 * fills them by: fo_optim_hparam_set). Adding a hyperparameter: one entry here; its spec names it (specs.py). */
#define FO_HPARAM_FIELDS(R, F)                                                                           \
    R(lr) R(weight_decay) R(eps)                                                                         \
    R(beta1) R(beta2) R(beta3)        /* Adam family, Lion; beta3: AdEMAMix's slow momentum */           \
    R(momentum) R(dampening)          /* SGD, RMSprop (momentum only) */                                 \
    R(alpha)                          /* RMSprop, ASGD (the eta decay power) */                          \
    R(lr_decay)                       /* Adagrad */                                                      \
    R(momentum_decay)                 /* NAdam */                                                        \
    R(rho)                            /* Adadelta */                                                     \
    R(etaminus) R(etaplus) R(step_size_min) R(step_size_max)   /* Rprop */                               \
    R(lambd) R(t0)                    /* ASGD */                                                         \
    R(t_alpha_beta3)                  /* AdEMAMix (0: no warm-up) */                                     \
    R(trust_coefficient)              /* LARS */                                                         \
    R(warmup_steps) R(r) R(weight_lr_power)   /* Schedule-Free: lr warm-up, averaging weights' powers */     \
    F(maximize) F(amsgrad) F(nesterov) F(centered) F(decoupled_weight_decay)                              \
    F(fixed_decay)                    /* decoupled decay not scaled by lr (AdEMAMix, LAMB) */             \
    F(grad_averaging) F(adam) F(adam_debias)   /* LAMB: (1 - b1) g in m; ratio 1; no 1 - b1^t */

/* Hyperparameters of a group, read at call time. Each algorithm uses the fields it names. */
#define FO_HP_REAL(name) double name;
#define FO_HP_FLAG(name) int name;
typedef struct fo_hparams { FO_HPARAM_FIELDS(FO_HP_REAL, FO_HP_FLAG) } fo_hparams;
#undef FO_HP_REAL
#undef FO_HP_FLAG

#define FO_HP_ONE(name) +1
enum { FO_HPARAM_COUNT = 0 FO_HPARAM_FIELDS(FO_HP_ONE, FO_HP_ONE) };
#undef FO_HP_ONE

/* Name of field `f` ("lr"), or NULL outside [0, FO_HPARAM_COUNT); 1 if it is a flag (int), else 0. */
const char *fo_optim_hparam_name(int f);
int fo_optim_hparam_is_flag(int f);
/* hp's field f <- v (a flag: v != 0), or its value as a double; nothing for f out of range (get: 0). */
void fo_optim_hparam_set(fo_hparams *hp, int f, double v);
double fo_optim_hparam_get(const fo_hparams *hp, int f);

/* Runs one step of `algo` on `ntensors` tensors of `dtype` (FO_F32 / FO_F64) with at most `nthreads` threads
 * (<= 0: fo_max_threads()). Returns FO_OK; FO_EINVAL for an unknown algorithm or dtype, or a tensor with a gradient
 * whose state formats are invalid (fo_optim_formats_valid); FO_ESTATE if a tensor with a gradient lacks state the
 * step needs (fo_optim_required_slots); nothing is written then. */
int fo_optim_step(int algo, int dtype, fo_tensor *ts, int64_t ntensors, const fo_hparams *hp, int nthreads);

/* SparseAdam's lazy step (torch.optim.SparseAdam) on nu rows of a C-contiguous (n_rows, n_cols) param of `dtype`
 * (FO_F32 / FO_F64) and its moments exp_avg, exp_avg_sq (same shape). Row rows[j] of the three (rows: strictly ascending, in
 * [0, n_rows): the sweep walks memory in address order) steps with the sum of the gradient
 * rows grad[order[r] n_cols .. (order[r] + 1) n_cols) for r in [starts[j], starts[j + 1]), added in r's order
 * (torch's coalesce: the caller sorts the k gradient rows by index, stably); no other row is touched. `step`: the
 * param's step count including this step (>= 1); hp's lr, beta1, beta2, eps and maximize. The touched rows'
 * concatenated elements split among at most `nthreads` threads (<= 0: fo_max_threads()); repeated rows are summed
 * FO_SPARSE_SUM elements at a time on the stack. FO_OK; FO_EINVAL (nothing written) for an unknown dtype, n_cols
 * or nu < 0, or step < 1. */
enum { FO_SPARSE_SUM = 512 };

/* One Adafactor param (torch.optim.Adafactor) of fo_adafactor_step: C-contiguous arrays of the call's dtype, not
 * overlapping. Factored (a param of 2+ dims): `batch` matrices of rows x cols (its last two dims), with row_var
 * (batch x rows) and col_var (batch x cols); else one vector of cols elements (batch = rows = 1) with variance
 * (cols). The per-step scalars come from the caller, in double: w = t^beta2_decay, rho = min(lr, 1 / sqrt(t)),
 * eps1 (already resolved from the dtype when None), eps2, d, decay = 1 - lr weight_decay, maximize. row_mean:
 * scratch the driver fills. */
typedef struct fo_adafactor {
    void *param;
    const void *grad;
    void *row_var, *col_var, *variance;
    void *row_mean;       /* batch values of the dtype: max(mean_r row_var, eps1) per matrix */
    int64_t batch, rows, cols;
    int factored, maximize;
    double w, rho, eps1, eps2, d, decay;
} fo_adafactor;

/* One Adafactor step of one param of `dtype` in three sweeps over param and gradient (read p, g; read g; read g,
 * read and write p), in fixed blocks of rows of one matrix (FO_ADAFACTOR_ROWS at least, and at least a block of
 * FO_BLOCK_ELEMENTS elements, so that the blocks' column partials stay a few percent of the param):
 *   1. sum p^2 (RMS(p) before decay) and, factored, each row's and each block's column sums of g^2;
 *   2. R <- lerp(R, (sqrt(rowsum)^2) / cols, w), C <- lerp(C, (sqrt(colsum)^2) / rows, w) in the dtype, as torch's
 *      norm(g, dim)^2 / n; rm = max(mean_r R, eps1); then sum U^2, U = g / sqrt(max(R C / rm, eps1^2)) (unfactored:
 *      v <- lerp(v, g^2, w) first, then U = g / sqrt(max(v, eps1^2)));
 *   3. p <- p decay - (alpha / max(1, RMS(U) / d)) U (the sign flipped under maximize: U of -g is -U), alpha =
 *      max(eps2, RMS(p)) rho.
 * Every sum is in double and added block by block in block order: the same bits at any thread count and on every
 * instruction-set path. An unfactored param is stepped in blocks of FO_BLOCK_ELEMENTS elements. FO_OK; FO_EINVAL (nothing written) for an
 * unknown dtype or a negative extent; FO_ENOMEM before anything is written. */
enum { FO_ADAFACTOR_ROWS = 64 };
int fo_adafactor_step(int dtype, fo_adafactor *a, int nthreads);

int fo_sparse_adam_step(int dtype, void *param, void *exp_avg, void *exp_avg_sq, int64_t n_cols, const int64_t *rows,
                        const int64_t *starts, int64_t nu, const int64_t *order, const void *grad, int64_t step,
                        const fo_hparams *hp, int nthreads);

/* Bitmask of the state a step of `algo` uses under `hp` (bit s: state[s]; FO_NEEDS_AUX: aux); -1: unknown algo. */
int fo_optim_required_slots(int algo, const fo_hparams *hp);

/* Lower-case name of algorithm `algo` ("adam"), or NULL outside [0, FO_ALGO_COUNT). */
const char *fo_optim_algo_name(int algo);

/* 1 if every element of x[0..n) is finite, else 0 (the check of step(grads, check_finite=True)). */
int fo_optim_all_finite_f32(const float *x, int64_t n, int nthreads);
int fo_optim_all_finite_f64(const double *x, int64_t n, int nthreads);
int fo_optim_all_finite_bf16(const uint16_t *x, int64_t n, int nthreads);

/* Element-range kernels of one instruction-set path: update elements [lo, hi) of tensor t. */
typedef void (*fo_optim_chunk_fn)(fo_tensor *t, const fo_hparams *hp, int64_t lo, int64_t hi);
/* The first sweep of a rule with a per-tensor trust ratio, over elements [lo, hi) of t: two sums of squares in
 * double (LARS: of the param and the gradient; LAMB: of the decayed param and the Adam update, the sweep also
 * writing the moments), each in FO_OPTIM_LANES running lanes: element lo + k's terms are added to
 * lanes[k % FO_OPTIM_LANES] and lanes[FO_OPTIM_LANES + k % FO_OPTIM_LANES], in element order (lanes is inout, 2 x
 * FO_OPTIM_LANES doubles). A call may so continue another's lanes: calls over consecutive ranges, each starting at
 * a multiple of FO_OPTIM_LANES from the first, add exactly what one call over their union does (the block wrapper
 * of low-precision state relies on it, optim_formats.h). The driver's partial sum of a block is its lanes' fixed-
 * order total, the same bits on every instruction-set path. */
enum { FO_OPTIM_LANES = 8 };
typedef void (*fo_optim_norm_fn)(fo_tensor *t, const fo_hparams *hp, int64_t lo, int64_t hi, double *lanes);
/* bfloat16 conversions of the low-precision state's block wrapper (bf16.h, compiled for the path's instruction set:
 * integer arithmetic only, the same bits on every path): x[0..n) <- h, h[0..n) <- x rounded. */
typedef void (*fo_bf16_decode_fn)(const uint16_t *h, int64_t n, float *x);
typedef void (*fo_bf16_encode_fn)(const float *x, int64_t n, uint16_t *h);
/* A bfloat16 param's store (see FO_COMP_*): p[0..n) <- x, the new float32 values, with compensation `mode`; old:
 * the values decoded before the step (KAHAN), comp: its buffer (KAHAN), key and first: the rounding bits' key and
 * the element index of x[0] (STOCHASTIC). */
typedef void (*fo_bf16_store_fn)(const float *x, const float *old, int64_t n, int mode, uint64_t key,
                                 uint64_t first, uint16_t *p, uint16_t *comp);
/* The int8/int4 code table of one map (built by optim_formats.c from quantize.h's thresholds; see
 * optim_formats_kernels.inc): entry[side * FO_QF_BUCKETS + bucket] = (c + 1) << 16 | t, c the code of the bucket's
 * least value and t where its one threshold (if any) falls in the low FO_QF_SHIFT bits of |v|; thr[k], the least
 * value of code >= k (k < 2^bits; +inf from 2^bits to 2^bits + 1); map, the code values. */
enum { FO_QF_SHIFT = 15, FO_QF_E0 = 103 << 8, FO_QF_BUCKETS = (127 << 8) - (103 << 8) + 1 };
typedef struct fo_qfast { int32_t entry[2 * FO_QF_BUCKETS]; float thr[256 + 2]; const float *map; int bits; } fo_qfast;
/* fo_quantize_block of a block of at most 256 finite values not all 0 (1), else nothing written (0). */
typedef int (*fo_qf_encode_fn)(const fo_qfast *q, const float *x, int64_t n, uint8_t *codes, float *absmax);
typedef void (*fo_qf_decode_fn)(const fo_qfast *q, const uint8_t *codes, int64_t n, float absmax, float *x);
/* LAMB's tile (fo_optim_tile): its norm sweep over [lo, hi) also keeping each element's update in u[lo..hi) (of the
 * dtype), and the step that applies the kept updates instead of recomputing them; the same bits as lamb's norm and
 * chunk kernels. */
typedef void (*fo_lamb_keep_fn)(fo_tensor *t, const fo_hparams *hp, int64_t lo, int64_t hi, double *lanes, void *u);
typedef void (*fo_lamb_apply_fn)(fo_tensor *t, const fo_hparams *hp, int64_t lo, int64_t hi, const void *u);
typedef void (*fo_adafactor_sums_fn)(const fo_adafactor *a, int64_t b, int64_t r0, int64_t r1, double *psq,
                                     double *row_sq, double *col);
typedef double (*fo_adafactor_usq_fn)(const fo_adafactor *a, int64_t b, int64_t r0, int64_t r1);
typedef void (*fo_adafactor_apply_fn)(const fo_adafactor *a, int64_t b, int64_t r0, int64_t r1, double scale);
typedef struct fo_optim_kernels {
    fo_optim_chunk_fn chunk[FO_ALGO_COUNT][2];   /* [algo][dtype] */
    fo_optim_norm_fn norm[FO_ALGO_COUNT][2];     /* [algo][dtype]; NULL: the algorithm has no norm sweep */
    fo_bf16_decode_fn bf16_decode;
    fo_bf16_encode_fn bf16_encode;
    fo_bf16_store_fn bf16_store;
    fo_qf_encode_fn q_encode;
    fo_qf_decode_fn q_decode;
    fo_lamb_keep_fn lamb_keep[2];                /* [dtype] */
    fo_lamb_apply_fn lamb_apply[2];
    fo_optim_chunk_fn sparse_adam[2];            /* [dtype]: one gradient row of fo_sparse_adam_step */
    fo_adafactor_sums_fn adafactor_sums[2];      /* [dtype]: fo_adafactor_step's sweeps over rows [r0, r1) of */
    fo_adafactor_usq_fn adafactor_usq[2];        /* matrix b (optim_adafactor_kernels.inc) */
    fo_adafactor_apply_fn adafactor_apply[2];
} fo_optim_kernels;

/* Each path's table: csrc/kernels_<isa>.c; the active one: FO_KERNELS(FO_FAM_OPTIM, fo_optim_kernels) (dispatch.h). */

#endif
