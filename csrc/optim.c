/* Optimizer driver: per-step scalars in double, then one parallel sweep over all tensors of the call. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "optim.h"
#include "optim_formats.h"
#include "dispatch.h"

static const fo_optim_kernels *fo_optim_table(void)
{
    return FO_KERNELS(FO_FAM_OPTIM, fo_optim_kernels);
}

/* AdEMAMix's per-step scalars (see ademamix_chunk): bias corrections, the alpha and beta3 warm-ups over
 * t_alpha_beta3 steps (0: none), the decoupled decay factor; reciprocals, so the kernel only multiplies. */
static void fo_optim_ademamix_prepare(fo_tensor *t, const fo_hparams *hp, double step)
{
    const double b1 = hp->beta1, b3 = hp->beta3, T = hp->t_alpha_beta3;
    t->coef[0] = 1.0 / (1.0 - pow(b1, step));
    t->coef[1] = 1.0 / sqrt(1.0 - pow(hp->beta2, step));
    t->coef[2] = T == 0.0 ? hp->alpha : fmin(step * hp->alpha / T, hp->alpha);
    t->coef[3] = b3;
    if (T != 0.0) {
        const double lb1 = log(b1), lb3 = log(b3);
        t->coef[3] = fmin(exp(lb1 * lb3 / ((1.0 - step / T) * lb3 + (step / T) * lb1)), b3);
    }
    t->coef[4] = 1.0 - hp->weight_decay * (hp->fixed_decay ? 1.0 : hp->lr);
}

/* Adan's per-step scalars (see adan_chunk): the step sizes of m and n, sqrt(1 - b3^t), whether a previous
 * gradient exists, the decoupled decay and the proximal factor. */
static void fo_optim_adan_prepare(fo_tensor *t, const fo_hparams *hp, double step)
{
    t->coef[0] = hp->lr / (1.0 - pow(hp->beta1, step));
    t->coef[1] = hp->lr * hp->beta2 / (1.0 - pow(hp->beta2, step));
    t->coef[2] = 1.0 / sqrt(1.0 - pow(hp->beta3, step));
    t->coef[3] = step == 1.0 ? 0.0 : 1.0;
    t->coef[4] = 1.0 - hp->lr * hp->weight_decay;
    t->coef[5] = 1.0 / (1.0 + hp->lr * hp->weight_decay);
}

/* LARS's trust ratio from the norm sweep's sums (coef[4] = sum p^2, coef[5] = sum g^2): r = tc ||p|| / (||g|| +
 * wd ||p||), 1 where ||p|| or that denominator is 0 (or NaN). */
static void fo_optim_lars_prepare(fo_tensor *t, const fo_hparams *hp)
{
    const double pn = sqrt(t->coef[4]), den = sqrt(t->coef[5]) + hp->weight_decay * pn;
    t->coef[0] = pn > 0.0 && den > 0.0 ? hp->trust_coefficient * pn / den : 1.0;
}

/* LAMB's step size times its trust ratio, from the norm sweep's sums (coef[4] = sum p'^2 of the decayed param,
 * coef[5] = sum u^2 of the Adam update): r = min(||p'||, 10) / (||u|| + eps), 1 where either norm is 0 or with
 * adam; the step size lr / (1 - b1^t), or lr with adam_debias. coef[1]: the decoupled decay factor. */
static void fo_optim_lamb_prepare(fo_tensor *t, const fo_hparams *hp, double step)
{
    const double wn = fmin(sqrt(t->coef[4]), 10.0), un = sqrt(t->coef[5]);
    const double ratio = hp->adam || wn == 0.0 || un == 0.0 ? 1.0 : wn / (un + hp->eps);
    const double step_size = hp->adam_debias ? hp->lr : hp->lr / (1.0 - pow(hp->beta1, step));
    t->coef[0] = step_size * ratio;
    t->coef[1] = 1.0 - hp->weight_decay * (hp->fixed_decay ? 1.0 : hp->lr);
}

/* Schedule-Free's per-step scalars (schedulefree's group values, here per param: k = step - 1; aux[0] lr_max,
 * aux[1] weight_sum, advanced once per step), in the reference's operation order: the warmed-up lr, 1 / sqrt(1 - b2^t),
 * c = ckp1 = weight / weight_sum (0 when weight_sum is 0) and y's gradient coefficient lr (b1 (1 - c) - 1). */
static void fo_optim_schedulefree_prepare(fo_tensor *t, const fo_hparams *hp, double step, double b1)
{
    const double k = step - 1.0;
    const double sched = k < hp->warmup_steps ? (k + 1.0) / hp->warmup_steps : 1.0;
    const double lr = hp->lr * sched;
    double lr_max, weight, weight_sum, ckp1;
    lr_max = t->aux[0] = t->aux[0] > lr ? t->aux[0] : lr;      /* Python's max(lr, lr_max) */
    weight = pow(k + 1.0, hp->r) * pow(lr_max, hp->weight_lr_power);
    weight_sum = t->aux[1] = t->aux[1] + weight;
    ckp1 = weight_sum != 0.0 ? weight / weight_sum : 0.0;
    t->coef[0] = lr;
    t->coef[1] = 1.0 / sqrt(1.0 - pow(hp->beta2, k + 1.0));
    t->coef[2] = ckp1;
    t->coef[3] = lr * (b1 * (1.0 - ckp1) - 1.0);
}

/* 1 if `algo`'s step starts with the norm sweep (fo_optim_norm_sweep), whose sums its scalars read. */
static int fo_optim_has_norm_sweep(int algo)
{
    return fo_optim_table()->norm[algo][0] != NULL;
}

/* Advances the tensor's step count and fills t->coef for `algo` (all in double, once per tensor). */
static void fo_optim_prepare(int algo, fo_tensor *t, const fo_hparams *hp)
{
    const double lr = hp->lr, b1 = hp->beta1, b2 = hp->beta2;
    const double step = (double)(++*t->step);
    if (fo_optim_has_norm_sweep(algo)) {   /* reads the sweep's sums in coef[4], coef[5]: not cleared */
        if (algo == FO_ALGO_lamb)
            fo_optim_lamb_prepare(t, hp, step);
        else
            fo_optim_lars_prepare(t, hp);
        return;
    }
    t->coef[0] = t->coef[1] = t->coef[2] = t->coef[3] = t->coef[4] = t->coef[5] = 0.0;
    switch (algo) {
    case FO_ALGO_adam:
        t->coef[0] = lr / (1.0 - pow(b1, step));
        t->coef[1] = 1.0 / sqrt(1.0 - pow(b2, step));
        t->coef[2] = 1.0 - lr * hp->weight_decay;
        break;
    case FO_ALGO_adamax:
        t->coef[0] = lr / (1.0 - pow(b1, step));
        break;
    case FO_ALGO_nadam: {
        const double mu = b1 * (1.0 - 0.5 * pow(0.96, step * hp->momentum_decay));
        const double mu_next = b1 * (1.0 - 0.5 * pow(0.96, (step + 1.0) * hp->momentum_decay));
        const double mu_product = *t->aux * mu;
        *t->aux = mu_product;
        t->coef[0] = 1.0 / sqrt(1.0 - pow(b2, step));
        t->coef[1] = -lr * (1.0 - mu) / (1.0 - mu_product);
        t->coef[2] = -lr * mu_next / (1.0 - mu_product * mu_next);
        t->coef[3] = 1.0 - lr * hp->weight_decay;
        break;
    }
    case FO_ALGO_radam: {
        const double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
        const double rho_inf = 2.0 / (1.0 - b2) - 1.0;
        const double rho_t = rho_inf - 2.0 * step * pow(b2, step) / bc2;
        t->coef[0] = lr / bc1;
        t->coef[3] = 1.0 - lr * hp->weight_decay;
        if (rho_t > 5.0) {
            const double r_t = sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t));
            t->coef[1] = lr * r_t * sqrt(bc2) / bc1;
            t->coef[4] = 1.0;
        }
        break;
    }
    case FO_ALGO_adagrad:
        t->coef[0] = lr / (1.0 + (step - 1.0) * hp->lr_decay);
        break;
    case FO_ALGO_asgd:                   /* torch: this step uses the eta and mu the last step left */
        t->coef[0] = 1.0 - hp->lambd * *t->aux;
        t->coef[1] = *t->aux;
        t->coef[2] = step == 1.0 ? 1.0 : 1.0 / fmax(1.0, step - 1.0 - hp->t0);
        *t->aux = lr / pow(1.0 + hp->lambd * lr * step, hp->alpha);
        break;
    case FO_ALGO_ademamix:
        fo_optim_ademamix_prepare(t, hp, step);
        break;
    case FO_ALGO_adan:
        fo_optim_adan_prepare(t, hp, step);
        break;
    case FO_ALGO_sfadamw:
        fo_optim_schedulefree_prepare(t, hp, step, b1);
        break;
    case FO_ALGO_sfsgd:
        fo_optim_schedulefree_prepare(t, hp, step, hp->momentum);
        break;
    default:
        break;
    }
}

int fo_optim_required_slots(int algo, const fo_hparams *hp)
{
    switch (algo) {
    case FO_ALGO_sgd: return hp->momentum != 0.0 ? 1 : 0;
    case FO_ALGO_adam: return hp->amsgrad ? 7 : 3;
    case FO_ALGO_adamax: case FO_ALGO_radam: case FO_ALGO_adadelta: case FO_ALGO_rprop: case FO_ALGO_lamb: return 3;
    case FO_ALGO_ademamix: return 7;
    case FO_ALGO_adan: return 15;
    case FO_ALGO_lars: return hp->momentum > 0.0 ? 1 : 0;
    case FO_ALGO_asgd: return 1 | FO_NEEDS_AUX;
    case FO_ALGO_nadam: return 3 | FO_NEEDS_AUX;
    case FO_ALGO_sfadamw: return 3 | FO_NEEDS_AUX;    /* z, exp_avg_sq; lr_max and weight_sum */
    case FO_ALGO_sfsgd: return 1 | FO_NEEDS_AUX;      /* z */
    case FO_ALGO_rmsprop: return 1 | (hp->momentum > 0.0 ? 2 : 0) | (hp->centered ? 4 : 0);
    default: return algo >= 0 && algo < FO_ALGO_COUNT ? 1 : -1;
    }
}

const char *fo_optim_algo_name(int algo)
{
#define FO_ALGO_NAME(name) #name,
    static const char *const names[FO_ALGO_COUNT] = { FO_OPTIM_ALGOS(FO_ALGO_NAME) };
#undef FO_ALGO_NAME
    return algo >= 0 && algo < FO_ALGO_COUNT ? names[algo] : NULL;
}

/* Field table of fo_hparams, from the one list (FO_HPARAM_FIELDS): name, byte offset, flag or real. */
#define FO_HP_REAL(name) { #name, offsetof(fo_hparams, name), 0 },
#define FO_HP_FLAG(name) { #name, offsetof(fo_hparams, name), 1 },
static const struct { const char *name; size_t offset; int flag; } fo_hparam_table[FO_HPARAM_COUNT] = {
    FO_HPARAM_FIELDS(FO_HP_REAL, FO_HP_FLAG)
};
#undef FO_HP_REAL
#undef FO_HP_FLAG

const char *fo_optim_hparam_name(int f)
{
    return f >= 0 && f < FO_HPARAM_COUNT ? fo_hparam_table[f].name : NULL;
}

int fo_optim_hparam_is_flag(int f)
{
    return f >= 0 && f < FO_HPARAM_COUNT && fo_hparam_table[f].flag;
}

void fo_optim_hparam_set(fo_hparams *hp, int f, double v)
{
    char *at;
    if (f < 0 || f >= FO_HPARAM_COUNT)
        return;
    at = (char *)hp + fo_hparam_table[f].offset;
    if (fo_hparam_table[f].flag)
        *(int *)at = v != 0.0;
    else
        *(double *)at = v;
}

double fo_optim_hparam_get(const fo_hparams *hp, int f)
{
    const char *at;
    if (f < 0 || f >= FO_HPARAM_COUNT)
        return 0.0;
    at = (const char *)hp + fo_hparam_table[f].offset;
    return fo_hparam_table[f].flag ? (double)*(const int *)at : *(const double *)at;
}

/* 1 if every tensor with a gradient has its step counter and the state that `need` (fo_optim_required_slots) names. */
static int fo_optim_has_state(const fo_tensor *ts, int64_t ntensors, int need)
{
    int64_t i;
    int s;
    for (i = 0; i < ntensors; ++i) {
        if (ts[i].grad == NULL)
            continue;
        if (ts[i].step == NULL || ((need & FO_NEEDS_AUX) && ts[i].aux == NULL))
            return 0;
        for (s = 0; s < FO_MAX_SLOTS; ++s)
            if (((need >> s) & 1) && ts[i].state[s] == NULL && ts[i].numel > 0)
                return 0;
    }
    return 1;
}

/* 1 if t steps in the team-wide sweeps: it has a gradient, and the step is not tiled or t is too large a tile. */
static int fo_optim_in_sweep(const fo_tensor *t, int tiled)
{
    return t->grad != NULL && !(tiled && t->numel <= FO_OPTIM_TILE);
}

/* The segment sweep of a step (dispatch.h): a tensor outside the team-wide sweep takes no part. */
typedef struct {
    fo_tensor *ts;
    const fo_hparams *hp;
    fo_optim_chunk_fn chunk;
    fo_optim_norm_fn renorm;    /* fo_optim_renorm: re-run on each block of low-precision state before chunk */
    int tiled;
} fo_optim_sweep_ctx;

static int64_t fo_optim_segment_size(const void *vctx, int64_t k)
{
    const fo_optim_sweep_ctx *ctx = (const fo_optim_sweep_ctx *)vctx;
    const fo_tensor *t = &ctx->ts[k];
    return fo_optim_in_sweep(t, ctx->tiled) && !fo_optim_has_formats(t) ? t->numel : 0;
}

static void fo_optim_segment(const void *vctx, int64_t k, int64_t a, int64_t b)
{
    const fo_optim_sweep_ctx *ctx = (const fo_optim_sweep_ctx *)vctx;
    ctx->chunk(&ctx->ts[k], ctx->hp, a, b);
}

/* The block sweep of the tensors with low-precision state (optim_formats.h): the segment sweep over their
 * concatenated blocks, so that a thread's share holds whole blocks (a quantization block is never split). */
static int64_t fo_optim_format_size(const void *vctx, int64_t k)
{
    const fo_optim_sweep_ctx *ctx = (const fo_optim_sweep_ctx *)vctx;
    const fo_tensor *t = &ctx->ts[k];
    const int64_t bs = fo_optim_format_block(t);
    return fo_optim_in_sweep(t, ctx->tiled) && bs > 0 ? (t->numel + bs - 1) / bs : 0;
}

static void fo_optim_format_segment(const void *vctx, int64_t k, int64_t a, int64_t b)
{
    const fo_optim_sweep_ctx *ctx = (const fo_optim_sweep_ctx *)vctx;
    fo_optim_format_blocks(ctx->chunk, ctx->renorm, &ctx->ts[k], ctx->hp, a, b);
}

/* 1 if the state formats of every tensor with a gradient can step (fo_optim_formats_valid). */
static int fo_optim_formats_ok(int dtype, const fo_tensor *ts, int64_t ntensors)
{
    int64_t i;
    for (i = 0; i < ntensors; ++i)
        if (ts[i].grad != NULL && !fo_optim_formats_valid(&ts[i], dtype))
            return 0;
    return 1;
}

/* The team-wide sweeps of a step: native tensors by elements, those with low-precision state by blocks. */
static void fo_optim_sweeps(fo_optim_sweep_ctx *ctx, int64_t ntensors, int nthreads)
{
    int64_t i, total = 0, blocks = 0, formatted = 0;
    for (i = 0; i < ntensors; ++i) {
        total += fo_optim_segment_size(ctx, i);
        if (fo_optim_format_size(ctx, i) > 0) {
            blocks += fo_optim_format_size(ctx, i);
            formatted += ctx->ts[i].numel;
        }
    }
    fo_segment_sweep(ctx, ntensors, total, fo_threads_for(total, nthreads), fo_optim_segment_size,
                     fo_optim_segment);
    if (blocks > 0)
        fo_segment_sweep(ctx, ntensors, blocks, fo_threads_for(formatted, nthreads), fo_optim_format_size,
                         fo_optim_format_segment);
}

/* The tensors that take part in the norm sweep: those with a gradient, of 2+ dims for LARS (which adapts only
 * those), every one for LAMB (whose sweep also updates the moments). */
static int fo_optim_takes_norms(int algo, const fo_tensor *t)
{
    return t->grad != NULL && (t->ndim > 1 || algo == FO_ALGO_lamb);
}

/* The norm kernel a step of `algo` re-runs on each block of low-precision state before its step kernel: LAMB's,
 * whose norm sweep computes the moments its step reads (optim_formats.h); NULL for every other algorithm. */
static fo_optim_norm_fn fo_optim_renorm(int algo, int dtype)
{
    return algo == FO_ALGO_lamb ? fo_optim_table()->norm[algo][dtype] : NULL;
}

/* The fixed-order total of a norm kernel's lanes (fo_optim_norm_fn). */
static double fo_optim_lanes_total(const double *s)
{
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* part[0], part[1]: the two sums of `norms` over elements [lo, hi) of t, one partial-sum block (at most
 * FO_BLOCK_ELEMENTS, lo a multiple of it): one kernel call over native arrays, or the block wrapper's calls over
 * its decoded blocks, continuing the same lanes (optim_formats.h): the same additions either way. */
static void fo_optim_block_sums(fo_optim_norm_fn norms, fo_tensor *t, const fo_hparams *hp, int64_t lo, int64_t hi,
                                double *part)
{
    double lanes[2 * FO_OPTIM_LANES] = {0};
    if (fo_optim_has_formats(t))
        fo_optim_format_norms(norms, t, hp, lo, hi, lanes);
    else
        norms(t, hp, lo, hi, lanes);
    part[0] = fo_optim_lanes_total(lanes);
    part[1] = fo_optim_lanes_total(lanes + FO_OPTIM_LANES);
}

/* coef[4], coef[5] of a tile: its two sums, partial-sum block by block in block order as fo_optim_norm_sweep adds
 * them; by `keep` (also writing each element's update into u) where it is not NULL, else by `norms`. */
static void fo_optim_tile_sums(fo_optim_norm_fn norms, fo_lamb_keep_fn keep, fo_tensor *t, const fo_hparams *hp,
                               void *u)
{
    int64_t lo;
    t->coef[4] = t->coef[5] = 0.0;
    for (lo = 0; lo < t->numel; lo += FO_BLOCK_ELEMENTS) {
        const int64_t hi = lo + FO_BLOCK_ELEMENTS < t->numel ? lo + FO_BLOCK_ELEMENTS : t->numel;
        double part[2];
        if (keep != NULL) {
            double lanes[2 * FO_OPTIM_LANES] = {0};
            keep(t, hp, lo, hi, lanes, u);
            part[0] = fo_optim_lanes_total(lanes);
            part[1] = fo_optim_lanes_total(lanes + FO_OPTIM_LANES);
        } else {
            fo_optim_block_sums(norms, t, hp, lo, hi, part);
        }
        t->coef[4] += part[0];
        t->coef[5] += part[1];
    }
}

/* One tile (see FO_OPTIM_TILE): its sums, then its step. A LAMB tile with native state keeps each element's
 * update from the sums on the stack and applies it (the same bits, one square root and division an element). */
static void fo_optim_tile(int algo, int dtype, fo_tensor *t, const fo_hparams *hp)
{
    const fo_optim_kernels *k = fo_optim_table();
    const int64_t bs = fo_optim_format_block(t);
    if (algo == FO_ALGO_lamb && bs == 0 && t->numel <= FO_OPTIM_TILE) {
        double u[FO_OPTIM_TILE];      /* room for the tile's updates in either dtype */
        fo_optim_tile_sums(NULL, k->lamb_keep[dtype], t, hp, u);
        fo_optim_prepare(algo, t, hp);
        k->lamb_apply[dtype](t, hp, 0, t->numel, u);
        return;
    }
    if (fo_optim_takes_norms(algo, t))
        fo_optim_tile_sums(k->norm[algo][dtype], NULL, t, hp, NULL);
    fo_optim_prepare(algo, t, hp);
    if (bs > 0)
        fo_optim_format_blocks(k->chunk[algo][dtype], fo_optim_renorm(algo, dtype), t, hp, 0,
                               (t->numel + bs - 1) / bs);
    else
        k->chunk[algo][dtype](t, hp, 0, t->numel);
}

/* Every tile of the step, whole tiles split among the team: thread tid takes those that start in its share
 * [fo_split(total, tid, team), fo_split(total, tid + 1, team)) of the tiles' concatenated elements. */
static void fo_optim_tiles(int algo, int dtype, fo_tensor *ts, int64_t ntensors, const fo_hparams *hp, int nthreads)
{
    int64_t k, total = 0;
    int nth;
    for (k = 0; k < ntensors; ++k)
        if (ts[k].grad != NULL && !fo_optim_in_sweep(&ts[k], 1)) {
            total += ts[k].numel;
            if (ts[k].numel == 0)
                fo_optim_tile(algo, dtype, &ts[k], hp);    /* its step count only: no thread's share holds it */
        }
    nth = fo_threads_for(total, nthreads);
    (void)nth;
#pragma omp parallel num_threads(nth) if(nth > 1)
    {
        int tid = 0, team = 1;
        int64_t j, off = 0, lo, hi;
        FO_TEAM(tid, team);
        lo = fo_split(total, tid, team);
        hi = fo_split(total, tid + 1, team);
        for (j = 0; j < ntensors && off < hi; ++j) {
            if (ts[j].grad == NULL || fo_optim_in_sweep(&ts[j], 1) || ts[j].numel == 0)
                continue;
            if (off >= lo)
                fo_optim_tile(algo, dtype, &ts[j], hp);
            off += ts[j].numel;
        }
    }
}

/* Blocks of FO_BLOCK_ELEMENTS over the tensors that take part, each tensor's blocks in order. */
typedef struct {
    fo_tensor *ts;
    const fo_hparams *hp;
    const int64_t *tensor, *lo;
    fo_optim_norm_fn norms;
} fo_optim_norm_ctx;

static void fo_optim_norm_block(const void *vctx, int64_t b, double *part)
{
    const fo_optim_norm_ctx *ctx = (const fo_optim_norm_ctx *)vctx;
    fo_tensor *t = &ctx->ts[ctx->tensor[b]];
    const int64_t lo = ctx->lo[b], hi = lo + FO_BLOCK_ELEMENTS < t->numel ? lo + FO_BLOCK_ELEMENTS : t->numel;
    fo_optim_block_sums(ctx->norms, t, ctx->hp, lo, hi, part);
}

/* coef[4] and coef[5]: the two sums of `algo`'s norm kernel (fo_optim_norm_fn) over every tensor that takes
 * part, its blocks' partials added in block order (blocked_sum.h: the same bits at any thread count). FO_OK, or
 * FO_ENOMEM before anything is written. */
static int fo_optim_norm_sweep(int algo, int dtype, fo_tensor *ts, int64_t ntensors, const fo_hparams *hp,
                               int nthreads)
{
    fo_optim_norm_ctx ctx;
    int64_t k, b, nblocks = 0, work = 0, *index;
    double *part;
    for (k = 0; k < ntensors; ++k)
        if (fo_optim_takes_norms(algo, &ts[k]) && fo_optim_in_sweep(&ts[k], 1)) {
            nblocks += fo_block_count(ts[k].numel);
            work += ts[k].numel;
        }
    index = (int64_t *)malloc((size_t)(2 * nblocks + 1) * sizeof(int64_t));
    part = (double *)malloc((size_t)(2 * nblocks + 1) * sizeof(double));
    if (index == NULL || part == NULL) {
        free(index);
        free(part);
        return FO_ENOMEM;
    }
    for (k = 0, b = 0; k < ntensors; ++k) {
        int64_t lo;
        if (fo_optim_takes_norms(algo, &ts[k]) && fo_optim_in_sweep(&ts[k], 1))
            for (lo = 0; lo < ts[k].numel; lo += FO_BLOCK_ELEMENTS, ++b) {
                index[b] = k;
                index[nblocks + b] = lo;
            }
    }
    ctx.ts = ts;
    ctx.tensor = index;
    ctx.lo = index + nblocks;
    ctx.hp = hp;
    ctx.norms = fo_optim_table()->norm[algo][dtype];
    fo_blocked_partials(&ctx, fo_optim_norm_block, nblocks, 2, fo_threads_for(work, nthreads), NULL, part);
    for (k = 0, b = 0; k < ntensors; ++k) {
        if (!fo_optim_takes_norms(algo, &ts[k]) && fo_optim_in_sweep(&ts[k], 1))
            continue;
        ts[k].coef[4] = ts[k].coef[5] = 0.0;
        for (; b < nblocks && index[b] == k; ++b) {
            ts[k].coef[4] += part[2 * b];
            ts[k].coef[5] += part[2 * b + 1];
        }
    }
    free(index);
    free(part);
    return FO_OK;
}

int fo_optim_step(int algo, int dtype, fo_tensor *ts, int64_t ntensors, const fo_hparams *hp, int nthreads)
{
    fo_optim_sweep_ctx ctx;
    int64_t i;
    int tiled;

    if (algo < 0 || algo >= FO_ALGO_COUNT || (dtype != FO_F32 && dtype != FO_F64)
        || !fo_optim_formats_ok(dtype, ts, ntensors))
        return FO_EINVAL;
    if (!fo_optim_has_state(ts, ntensors, fo_optim_required_slots(algo, hp)))
        return FO_ESTATE;
    tiled = fo_optim_has_norm_sweep(algo);
    if (tiled && fo_optim_norm_sweep(algo, dtype, ts, ntensors, hp, nthreads) != FO_OK)
        return FO_ENOMEM;

    for (i = 0; i < ntensors; ++i)
        if (fo_optim_in_sweep(&ts[i], tiled))
            fo_optim_prepare(algo, &ts[i], hp);

    ctx.ts = ts;
    ctx.hp = hp;
    ctx.chunk = fo_optim_table()->chunk[algo][dtype];
    ctx.renorm = fo_optim_renorm(algo, dtype);
    ctx.tiled = tiled;
    fo_optim_sweeps(&ctx, ntensors, nthreads);
    if (tiled)
        fo_optim_tiles(algo, dtype, ts, ntensors, hp, nthreads);

    for (i = 0; i < ntensors; ++i)
        if (ts[i].grad != NULL)
            ts[i].fresh = 0;
    return FO_OK;
}

/* SparseAdam's rows as the segments of one sweep (dispatch.h): segment j is row rows[j] of param and state, n_cols
 * elements, stepped by the sum of its gradient rows; one fo_tensor per call of the kernel, on the stack, holding
 * the fields it reads. */
typedef struct {
    char *param, *m, *v;
    const char *grad;
    const int64_t *rows, *starts, *order;
    int64_t n_cols, nu;
    size_t esize, row_bytes;
    double step_size;
    const fo_hparams *hp;
    fo_optim_chunk_fn chunk;
    int dtype;
} fo_sparse_ctx;

static int64_t fo_sparse_row_size(const void *vctx, int64_t j)
{
    (void)j;
    return ((const fo_sparse_ctx *)vctx)->n_cols;
}

/* sum[0..n) <- the gradient rows order[r0..r1), elements [c, c + n) of each, added in r's order. */
static void fo_sparse_sum(const fo_sparse_ctx *x, int64_t r0, int64_t r1, int64_t c, int64_t n, void *sum)
{
    int64_t r, e;
#define FO_SPARSE_ADD(REAL)                                                                     \
    {                                                                                           \
        REAL *restrict s = (REAL *)sum;                                                         \
        const REAL *first = (const REAL *)x->grad + x->order[r0] * x->n_cols + c;             \
        for (e = 0; e < n; ++e)                                                                 \
            s[e] = first[e];                                                                    \
        for (r = r0 + 1; r < r1; ++r) {                                                         \
            const REAL *restrict g = (const REAL *)x->grad + x->order[r] * x->n_cols + c;     \
            for (e = 0; e < n; ++e)                                                             \
                s[e] = s[e] + g[e];                                                             \
        }                                                                                       \
    }
    if (x->dtype == FO_F32)
        FO_SPARSE_ADD(float)
    else
        FO_SPARSE_ADD(double)
#undef FO_SPARSE_ADD
}

/* The rows are scattered over the table, where no hardware prefetcher follows: while row j steps, the cache
 * lines of param and state of the row FO_SPARSE_AHEAD segments on are requested (for writing), so their misses
 * overlap this row's work. */
enum { FO_SPARSE_AHEAD = 8, FO_CACHE_LINE = 64 };

static void fo_sparse_prefetch(const fo_sparse_ctx *x, int64_t j, int64_t nu)
{
    size_t row, o;
    if (j >= nu)
        return;
    row = (size_t)x->rows[j] * x->row_bytes;
    for (o = 0; o < x->row_bytes; o += FO_CACHE_LINE) {
        __builtin_prefetch(x->param + row + o, 1);
        __builtin_prefetch(x->m + row + o, 1);
        __builtin_prefetch(x->v + row + o, 1);
    }
}

static void fo_sparse_row(const void *vctx, int64_t j, int64_t a, int64_t b)
{
    const fo_sparse_ctx *x = (const fo_sparse_ctx *)vctx;
    const size_t row = (size_t)x->rows[j] * x->row_bytes;
    const int64_t r0 = x->starts[j], r1 = x->starts[j + 1];
    double sum[FO_SPARSE_SUM];    /* room for FO_SPARSE_SUM elements of either dtype */
    fo_tensor t;
    int64_t c;
    if (x->row_bytes <= 16 * FO_CACHE_LINE)
        fo_sparse_prefetch(x, j + FO_SPARSE_AHEAD, x->nu);
    t.coef[0] = x->step_size;
    if (r1 - r0 == 1) {
        t.param = x->param + row;
        t.grad = x->grad + (size_t)x->order[r0] * x->row_bytes;
        t.state[0] = x->m + row;
        t.state[1] = x->v + row;
        x->chunk(&t, x->hp, a, b);
        return;
    }
    for (c = a; c < b; c += FO_SPARSE_SUM) {
        const int64_t n = b - c < FO_SPARSE_SUM ? b - c : FO_SPARSE_SUM;
        const size_t at = row + (size_t)c * x->esize;
        fo_sparse_sum(x, r0, r1, c, n, sum);
        t.param = x->param + at;
        t.grad = sum;
        t.state[0] = x->m + at;
        t.state[1] = x->v + at;
        x->chunk(&t, x->hp, 0, n);
    }
}

int fo_sparse_adam_step(int dtype, void *param, void *exp_avg, void *exp_avg_sq, int64_t n_cols, const int64_t *rows,
                        const int64_t *starts, int64_t nu, const int64_t *order, const void *grad, int64_t step,
                        const fo_hparams *hp, int nthreads)
{
    fo_sparse_ctx x;
    const double t = (double)step;
    if ((dtype != FO_F32 && dtype != FO_F64) || n_cols < 0 || nu < 0 || step < 1)
        return FO_EINVAL;
    x.param = (char *)param;
    x.m = (char *)exp_avg;
    x.v = (char *)exp_avg_sq;
    x.grad = (const char *)grad;
    x.rows = rows;
    x.starts = starts;
    x.order = order;
    x.n_cols = n_cols;
    x.dtype = dtype;
    x.esize = dtype == FO_F32 ? sizeof(float) : sizeof(double);
    x.row_bytes = (size_t)n_cols * x.esize;
    x.nu = nu;
    x.step_size = hp->lr * sqrt(1.0 - pow(hp->beta2, t)) / (1.0 - pow(hp->beta1, t));
    x.hp = hp;
    x.chunk = fo_optim_table()->sparse_adam[dtype];
    fo_segment_sweep(&x, nu, nu * n_cols, fo_threads_for(nu * n_cols, nthreads), fo_sparse_row_size, fo_sparse_row);
    return FO_OK;
}

/* x * 0 is 0 for finite x and NaN for inf or NaN, so the sum is NaN exactly when some element is not finite. */
#define FO_ALL_FINITE(REAL, SUFFIX)                                                        \
    int fo_optim_all_finite_##SUFFIX(const REAL *x, int64_t n, int nthreads)              \
    {                                                                                      \
        REAL acc = 0;                                                                      \
        int64_t i;                                                                         \
        const int nth = fo_threads_for(n, nthreads);                                       \
        (void)nth;                                                                         \
        _Pragma("omp parallel for simd schedule(static) reduction(+:acc) num_threads(nth) if(nth > 1)") \
        for (i = 0; i < n; ++i)                                                            \
            acc += x[i] * (REAL)0;                                                         \
        return acc == acc;                                                                 \
    }
FO_ALL_FINITE(float, f32)
FO_ALL_FINITE(double, f64)

/* A bfloat16 value is not finite exactly when its 8 exponent bits are all ones. */
int fo_optim_all_finite_bf16(const uint16_t *x, int64_t n, int nthreads)
{
    int64_t i, bad = 0;
    const int nth = fo_threads_for(n, nthreads);
    (void)nth;
#pragma omp parallel for simd schedule(static) reduction(+:bad) num_threads(nth) if(nth > 1)
    for (i = 0; i < n; ++i)
        bad += (x[i] & 0x7F80u) == 0x7F80u;
    return bad == 0;
}
