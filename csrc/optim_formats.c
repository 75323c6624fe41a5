/* The block wrapper of low-precision optimizer state (see optim_formats.h). */
#include "optim_formats.h"
#include "dispatch.h"

int fo_optim_has_formats(const fo_tensor *t)
{
    int s;
    for (s = 0; s < FO_MAX_SLOTS; ++s)
        if (t->format[s] != FO_STATE_NATIVE)
            return 1;
    return 0;
}

int64_t fo_optim_format_block(const fo_tensor *t)
{
    int s, any = 0;
    for (s = 0; s < FO_MAX_SLOTS; ++s) {
        if (t->format[s] == FO_STATE_INT4)
            return FO_QBLOCK_INT4;
        any |= t->format[s] != FO_STATE_NATIVE;
    }
    return any ? FO_FORMAT_MAX_BLOCK : 0;
}

int fo_optim_formats_valid(const fo_tensor *t, int dtype, int has_norm_sweep)
{
    int s, int8 = 0, int4 = 0;
    if (!fo_optim_has_formats(t))
        return 1;
    if (dtype != FO_F32 || has_norm_sweep)
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
        fo_dequantize_block((const uint8_t *)t->state[s] + lo, n, 8, t->is_signed[s], t->absmax[s][lo / FO_QBLOCK_INT8],
                            buf);
        local->state[s] = buf;
        break;
    case FO_STATE_INT4:
        fo_dequantize_block((const uint8_t *)t->state[s] + lo / 2, n, 4, t->is_signed[s],
                            t->absmax[s][lo / FO_QBLOCK_INT4], buf);
        local->state[s] = buf;
        break;
    default:
        local->state[s] = (float *)t->state[s] + lo;
        break;
    }
}

/* Writes buf, the new values of slot s at elements [lo, lo + n), back in the slot's format (native: in place). */
static void fo_format_store(const fo_optim_kernels *k, fo_tensor *t, int s, int64_t lo, int64_t n,
                            const float *buf)
{
    switch (t->format[s]) {
    case FO_STATE_BF16:
        k->bf16_encode(buf, n, (uint16_t *)t->state[s] + lo);
        break;
    case FO_STATE_INT8:
        fo_quantize_block(buf, n, 8, t->is_signed[s], (uint8_t *)t->state[s] + lo, &t->absmax[s][lo / FO_QBLOCK_INT8]);
        break;
    case FO_STATE_INT4:
        fo_quantize_block(buf, n, 4, t->is_signed[s], (uint8_t *)t->state[s] + lo / 2,
                          &t->absmax[s][lo / FO_QBLOCK_INT4]);
        break;
    default:
        break;
    }
}

void fo_optim_format_blocks(fo_optim_chunk_fn chunk, fo_tensor *t, const fo_hparams *hp, int64_t b0, int64_t b1)
{
    float buf[FO_MAX_SLOTS][FO_FORMAT_MAX_BLOCK] __attribute__((aligned(64)));
    const fo_optim_kernels *k = FO_KERNELS(FO_FAM_OPTIM, fo_optim_kernels);
    const int64_t bs = fo_optim_format_block(t);
    fo_tensor local = *t;
    int64_t b;
    int s;
    for (b = b0; b < b1; ++b) {
        const int64_t lo = b * bs, n = t->numel - lo < bs ? t->numel - lo : bs;
        local.param = (float *)t->param + lo;
        local.grad = (const float *)t->grad + lo;
        local.numel = n;
        for (s = 0; s < FO_MAX_SLOTS; ++s)
            if (t->state[s] != NULL)
                fo_format_load(k, t, s, lo, n, &local, buf[s]);
        chunk(&local, hp, 0, n);
        for (s = 0; s < FO_MAX_SLOTS; ++s)
            if (t->state[s] != NULL)
                fo_format_store(k, t, s, lo, n, buf[s]);
    }
}
