/* The block wrapper of low-precision optimizer state (see optim_formats.h). */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "optim_formats.h"
#include "dispatch.h"
#include "bf16.h"

/* The norm sweep's blocks of low-precision state lie inside the driver's partial-sum blocks and start on a lane
 * boundary (optim_formats.h): the sums are those of the float32 step. */
_Static_assert(FO_BLOCK_ELEMENTS % FO_QBLOCK_INT8 == 0 && FO_BLOCK_ELEMENTS % FO_QBLOCK_INT4 == 0,
               "a format block must not straddle a partial-sum block");
_Static_assert(FO_QBLOCK_INT4 % FO_OPTIM_LANES == 0 && FO_QBLOCK_INT8 % FO_OPTIM_LANES == 0,
               "a format block must start on a lane boundary");

int fo_optim_has_formats(const fo_tensor *t)
{
    int s;
    if (t->param_format != FO_ARRAY_NATIVE || t->grad_format != FO_ARRAY_NATIVE)
        return 1;
    for (s = 0; s < FO_MAX_SLOTS; ++s)
        if (t->format[s] != FO_STATE_NATIVE)
            return 1;
    return 0;
}

int64_t fo_optim_format_block(const fo_tensor *t)
{
    int s, any = t->param_format != FO_ARRAY_NATIVE || t->grad_format != FO_ARRAY_NATIVE;
    for (s = 0; s < FO_MAX_SLOTS; ++s) {
        if (t->format[s] == FO_STATE_INT4)
            return FO_QBLOCK_INT4;
        any |= t->format[s] != FO_STATE_NATIVE;
    }
    return any ? FO_FORMAT_MAX_BLOCK : 0;
}

int fo_optim_formats_valid(const fo_tensor *t, int dtype)
{
    int s, int8 = 0, int4 = 0;
    if (!fo_optim_has_formats(t))
        return 1;
    if (dtype != FO_F32 || t->param_format > FO_ARRAY_BF16 || t->grad_format > FO_ARRAY_BF16)
        return 0;
    if (t->compensation >= FO_COMPENSATIONS
        || (t->param_format == FO_ARRAY_BF16 && t->compensation == FO_COMP_KAHAN && t->comp == NULL))
        return 0;
    for (s = 0; s < FO_MAX_SLOTS; ++s) {
        const int f = t->format[s];
        if (f >= FO_STATE_FORMATS)
            return 0;
        if ((f == FO_STATE_INT8 || f == FO_STATE_INT4) && t->state[s] != NULL && t->absmax[s] == NULL)
            return 0;
        int8 |= f == FO_STATE_INT8;
        int4 |= f == FO_STATE_INT4;
    }
    return !(int8 && int4);
}

/* The int8/int4 code tables of the vectorized codecs (optim_formats_kernels.inc), [bits == 8][is_signed], built
 * once from quantize.h's exact thresholds; fo_qf_exact[..] = 0 where bucket 0 would hold a threshold or another
 * bucket two (then fo_quantize_block itself runs: the same codes, slower). */
static fo_qfast fo_qf_tables[2][2];
static int fo_qf_exact[2][2];
static pthread_once_t fo_qf_once = PTHREAD_ONCE_INIT;

static float fo_qf_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t fo_qf_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* The entry of bucket b on side `side` (1: v < 0) of zero, or -1 if the bucket cannot have one. Its values |v| are
 * [low, high]; within it, v >= T (T the bucket's threshold) iff low bits of |v| >= those of |T| (v > 0) or <= (v < 0).
 */
static int32_t fo_qf_entry(const fo_qfast *q, int is_signed, int side, int b)
{
    const uint32_t low = b == 0 ? 0u : (uint32_t)(FO_QF_E0 + b) << FO_QF_SHIFT, low_bits = (1u << FO_QF_SHIFT) - 1u;
    const uint32_t sign = side ? 0x80000000u : 0u;
    uint32_t high = ((uint32_t)(FO_QF_E0 + b + 1) << FO_QF_SHIFT) - 1u, thr;
    int least, greatest;
    high = high < 0x3F800000u ? high : 0x3F800000u;
    least = fo_qcode(q->bits, is_signed, fo_qf_float(sign | (side ? high : low)));
    greatest = fo_qcode(q->bits, is_signed, fo_qf_float(sign | (side ? low : high)));
    if (greatest == least)                         /* no threshold: the compare never moves the code */
        return ((least + 1) << 16) | (int32_t)(side ? 0u : low_bits + 1u);
    thr = fo_qf_bits(q->thr[greatest]) & 0x7FFFFFFFu;
    if (b == 0 || greatest != least + 1 || (thr >> FO_QF_SHIFT) != (low >> FO_QF_SHIFT))
        return -1;
    return ((least + 1) << 16) | (int32_t)((thr & low_bits) + (uint32_t)side);
}

/* Fills q for the map (bits, is_signed); 1 if every bucket has an entry. */
static int fo_qf_build(fo_qfast *q, int bits, int is_signed)
{
    const int size = 1 << bits;
    int k, side, b;
    q->bits = bits;
    q->map = fo_qmap(bits, is_signed);
    for (k = 0; k < 256 + 2; ++k)
        q->thr[k] = k >= 1 && k < size ? fo_qthreshold(bits, is_signed, k) : (k == 0 ? -INFINITY : INFINITY);
    for (side = 0; side < 2; ++side)
        for (b = 0; b < FO_QF_BUCKETS; ++b)
            if ((q->entry[side * FO_QF_BUCKETS + b] = fo_qf_entry(q, is_signed, side, b)) < 0)
                return 0;
    return 1;
}

static void fo_qf_init(void)
{
    int b8, sg;
    for (b8 = 0; b8 < 2; ++b8)
        for (sg = 0; sg < 2; ++sg)
            fo_qf_exact[b8][sg] = fo_qf_build(&fo_qf_tables[b8][sg], b8 ? 8 : 4, sg);
}

/* The vectorized codecs' table of (bits, is_signed), or NULL where fo_quantize_block must run. */
static const fo_qfast *fo_qf_table(int bits, int is_signed)
{
    pthread_once(&fo_qf_once, fo_qf_init);
    return fo_qf_exact[bits == 8][is_signed != 0] ? &fo_qf_tables[bits == 8][is_signed != 0] : NULL;
}

int fo_optim_qcodec_exact(int bits, int is_signed)
{
    return (bits == 8 || bits == 4) && fo_qf_table(bits, is_signed) != NULL;
}

int fo_optim_qcodec_encode(const float *x, int64_t n, int bits, int is_signed, uint8_t *codes, float *absmax)
{
    const fo_optim_kernels *k = FO_KERNELS(FO_FAM_OPTIM, fo_optim_kernels);
    const fo_qfast *q = fo_optim_qcodec_exact(bits, is_signed) ? fo_qf_table(bits, is_signed) : NULL;
    return q != NULL && n <= (bits == 8 ? FO_QBLOCK_INT8 : FO_QBLOCK_INT4) && k->q_encode(q, x, n, codes, absmax);
}

/* A block of int8/int4 slot s at element lo: decoded into buf / encoded from buf, with the active path's codecs. */
static void fo_qf_load(const fo_optim_kernels *k, const fo_tensor *t, int s, int64_t lo, int64_t n, float *buf)
{
    const int bits = t->format[s] == FO_STATE_INT8 ? 8 : 4, block = bits == 8 ? FO_QBLOCK_INT8 : FO_QBLOCK_INT4;
    const uint8_t *codes = (const uint8_t *)t->state[s] + (bits == 8 ? lo : lo / 2);
    const fo_qfast *q = fo_qf_table(bits, t->is_signed[s]);
    if (q != NULL)
        k->q_decode(q, codes, n, t->absmax[s][lo / block], buf);
    else
        fo_dequantize_block(codes, n, bits, t->is_signed[s], t->absmax[s][lo / block], buf);
}

static void fo_qf_store(const fo_optim_kernels *k, fo_tensor *t, int s, int64_t lo, int64_t n, const float *buf)
{
    const int bits = t->format[s] == FO_STATE_INT8 ? 8 : 4, block = bits == 8 ? FO_QBLOCK_INT8 : FO_QBLOCK_INT4;
    uint8_t *codes = (uint8_t *)t->state[s] + (bits == 8 ? lo : lo / 2);
    float *absmax = &t->absmax[s][lo / block];
    const fo_qfast *q = fo_qf_table(bits, t->is_signed[s]);
    if (q == NULL || !k->q_encode(q, buf, n, codes, absmax))
        fo_quantize_block(buf, n, bits, t->is_signed[s], codes, absmax);
}

/* Points local's slot s at elements [lo, lo + n) of t's: native state in place, any other decoded into buf;
 * k: the active path's kernels (its bfloat16 conversions). */
static void fo_format_load(const fo_optim_kernels *k, const fo_tensor *t, int s, int64_t lo, int64_t n,
                           fo_tensor *local, float *buf)
{
    switch (t->format[s]) {
    case FO_STATE_BF16:
        k->bf16_decode((const uint16_t *)t->state[s] + lo, n, buf);
        local->state[s] = buf;
        break;
    case FO_STATE_INT8:
    case FO_STATE_INT4:
        fo_qf_load(k, t, s, lo, n, buf);
        local->state[s] = buf;
        break;
    default:
        local->state[s] = (float *)t->state[s] + lo;
        break;
    }
}

/* Writes buf, the new values of slot s at elements [lo, lo + n), back in the slot's format (native: in place;
 * bfloat16: rounded to nearest, or stochastically with the bits of `key` under FO_COMP_STOCHASTIC). */
static void fo_format_store(const fo_optim_kernels *k, fo_tensor *t, int s, int64_t lo, int64_t n,
                            const float *buf, uint64_t key)
{
    switch (t->format[s]) {
    case FO_STATE_BF16:
        if (t->compensation == FO_COMP_STOCHASTIC)
            k->bf16_store(buf, NULL, n, FO_COMP_STOCHASTIC, key, (uint64_t)lo, (uint16_t *)t->state[s] + lo, NULL);
        else
            k->bf16_encode(buf, n, (uint16_t *)t->state[s] + lo);
        break;
    case FO_STATE_INT8:
    case FO_STATE_INT4:
        fo_qf_store(k, t, s, lo, n, buf);
        break;
    default:
        break;
    }
}

/* The float32 buffers of one block (on the stack: in L1). */
typedef struct {
    float state[FO_MAX_SLOTS][FO_FORMAT_MAX_BLOCK] __attribute__((aligned(64)));
    float param[FO_FORMAT_MAX_BLOCK] __attribute__((aligned(64)));
    float old[FO_FORMAT_MAX_BLOCK] __attribute__((aligned(64)));
    float grad[FO_FORMAT_MAX_BLOCK] __attribute__((aligned(64)));
} fo_format_bufs;

/* Points local's param, grad and state at elements [lo, lo + n) of t's: native ones in place, the others decoded
 * into buf. step 1: for the step (a Kahan store also keeps buf->old, the param's values before it); 0: for the
 * norm sweep, which writes nothing of t: native state is copied into buf too (LAMB's kernel writes the moments). */
static void fo_format_load_block(const fo_optim_kernels *k, const fo_tensor *t, int64_t lo, int64_t n, int step,
                                 fo_tensor *local, fo_format_bufs *buf)
{
    int s;
    if (t->param_format == FO_ARRAY_BF16) {
        k->bf16_decode((const uint16_t *)t->param + lo, n, buf->param);
        if (step && t->compensation == FO_COMP_KAHAN)
            memcpy(buf->old, buf->param, (size_t)n * sizeof *buf->old);
        local->param = buf->param;
    } else {
        local->param = (float *)t->param + lo;
    }
    if (t->grad_format == FO_ARRAY_BF16) {
        k->bf16_decode((const uint16_t *)t->grad + lo, n, buf->grad);
        local->grad = buf->grad;
    } else {
        local->grad = (const float *)t->grad + lo;
    }
    local->numel = n;
    for (s = 0; s < FO_MAX_SLOTS; ++s) {
        if (t->state[s] == NULL)
            continue;
        fo_format_load(k, t, s, lo, n, local, buf->state[s]);
        if (!step && t->format[s] == FO_STATE_NATIVE) {
            memcpy(buf->state[s], local->state[s], (size_t)n * sizeof(float));
            local->state[s] = buf->state[s];
        }
    }
}

void fo_optim_format_blocks(fo_optim_chunk_fn chunk, fo_optim_norm_fn renorm, fo_tensor *t, const fo_hparams *hp,
                            int64_t b0, int64_t b1)
{
    fo_format_bufs buf;
    const fo_optim_kernels *k = FO_KERNELS(FO_FAM_OPTIM, fo_optim_kernels);
    const int64_t bs = fo_optim_format_block(t);
    const uint64_t key = fo_bf16_round_key(t->round_seed, (uint64_t)*t->step);
    uint64_t slot_key[FO_MAX_SLOTS];
    fo_tensor local = *t;
    int64_t b;
    int s;
    for (s = 0; s < FO_MAX_SLOTS; ++s)
        slot_key[s] = fo_bf16_round_key(fo_mix64(t->round_seed) + (uint64_t)s + 1u, (uint64_t)*t->step);
    for (b = b0; b < b1; ++b) {
        const int64_t lo = b * bs, n = t->numel - lo < bs ? t->numel - lo : bs;
        fo_format_load_block(k, t, lo, n, 1, &local, &buf);
        if (renorm != NULL) {
            double lanes[2 * FO_OPTIM_LANES] = {0};
            renorm(&local, hp, 0, n, lanes);
        }
        chunk(&local, hp, 0, n);
        for (s = 0; s < FO_MAX_SLOTS; ++s)
            if (t->state[s] != NULL)
                fo_format_store(k, t, s, lo, n, buf.state[s], slot_key[s]);
        if (t->param_format == FO_ARRAY_BF16)
            k->bf16_store(buf.param, buf.old, n, t->compensation, key, (uint64_t)lo, (uint16_t *)t->param + lo,
                          t->comp != NULL ? t->comp + lo : NULL);
    }
}

void fo_optim_format_norms(fo_optim_norm_fn norms, fo_tensor *t, const fo_hparams *hp, int64_t lo, int64_t hi,
                           double *lanes)
{
    fo_format_bufs buf;
    const fo_optim_kernels *k = FO_KERNELS(FO_FAM_OPTIM, fo_optim_kernels);
    const int64_t bs = fo_optim_format_block(t);
    fo_tensor local = *t;
    int64_t at;
    for (at = lo; at < hi; at += bs) {
        const int64_t n = hi - at < bs ? hi - at : bs;
        fo_format_load_block(k, t, at, n, 0, &local, &buf);
        norms(&local, hp, 0, n, lanes);
    }
}
