/* Low-precision optimizer state (fo_tensor.format): the block wrapper of the optimizer driver.
 *
 * A tensor whose state has a non-native format steps block by block: for each block of fo_optim_format_block(t)
 * elements, every state slot in use is decoded into a float32 buffer on the stack (in L1), the active instruction
 * set's float32 kernel of the algorithm (the very kernel of native state) runs over the block with param, grad
 * and state pointing at it, and each slot's buffer is encoded back (bfloat16: rounded to nearest even; int8/int4:
 * requantized with the block's new absmax). One pass over memory, no float32 copy of a tensor, every element-wise
 * algorithm for free; a block is never split between threads, so the bits are those of any thread count.
 *
 * Rules with a norm sweep (LARS, LAMB: a trust ratio from two sums over the whole tensor) take the same blocks
 * twice, storing nothing the first time. The sweep (fo_optim_format_norms) decodes each block and runs the
 * algorithm's norm kernel on the buffers, continuing the caller's lanes (fo_optim_norm_fn), then discards them:
 * LAMB's new moments are not stored. Its blocks lie inside the driver's partial-sum blocks of FO_BLOCK_ELEMENTS
 * (a multiple of every format block), and a format block starts at a multiple of FO_OPTIM_LANES, so each lane
 * receives the very additions, in the same order, of one kernel call over the float32 tensor: the sums, hence the
 * trust ratios, are bit for bit those of the float32 step on the decoded values. The step (fo_optim_format_blocks
 * with a `renorm` kernel, LAMB's norm kernel) decodes each block again and first re-runs the norm kernel on it, so
 * that the buffers hold the new moments exactly as the sweep computed them (same inputs, same bits; its sums
 * discarded), then runs the step kernel and stores state and param. No float32 copy of a tensor, one read per
 * sweep; the step equals the float32 step of the decoded state and param, at any thread count, on every path. */
#ifndef FO_OPTIM_FORMATS_H
#define FO_OPTIM_FORMATS_H

#include "optim.h"
#include "quantize.h"

enum { FO_FORMAT_MAX_BLOCK = FO_QBLOCK_INT8 };   /* the largest block of any format (the stack buffers' length) */

/* 1 if t's param, gradient or some state slot has a non-native format (a bfloat16 param or grad, optim.h
 * FO_ARRAY_*, steps in the same blocks: decoded into a float32 buffer, its new values stored by t->compensation). */
int fo_optim_has_formats(const fo_tensor *t);

/* The block of t's step: 0 if every slot is native, else the quantization block of its formats (int4:
 * FO_QBLOCK_INT4 = 128; int8, bfloat16: FO_QBLOCK_INT8 = 256; bfloat16 alone is element-wise, its block is only the
 * buffers' length). */
int64_t fo_optim_format_block(const fo_tensor *t);

/* 1 if t's formats can step under `dtype`: every format known, non-native ones only with FO_F32, an absmax array
 * for each int8/int4 slot, a known compensation of a bfloat16 param and its buffer for Kahan's, and int8 and int4
 * slots not mixed in one tensor (their blocks differ). */
int fo_optim_formats_valid(const fo_tensor *t, int dtype);

/* Steps blocks [b0, b1) of t (blocks of fo_optim_format_block(t)) with `chunk`, the float32 kernel of the algorithm;
 * t->coef holds the step's scalars (fo_optim_prepare). renorm: NULL, or the norm kernel to re-run on each block
 * before `chunk` (its sums discarded), for a rule whose norm sweep computes state the step reads (LAMB). */
void fo_optim_format_blocks(fo_optim_chunk_fn chunk, fo_optim_norm_fn renorm, fo_tensor *t, const fo_hparams *hp,
                            int64_t b0, int64_t b1);

/* The norm sweep over elements [lo, hi) of t (lo a multiple of fo_optim_format_block(t)): `norms`, the float32
 * norm kernel, on each block decoded, continuing `lanes` (fo_optim_norm_fn); nothing of t is written. */
void fo_optim_format_norms(fo_optim_norm_fn norms, fo_tensor *t, const fo_hparams *hp, int64_t lo, int64_t hi,
                           double *lanes);

/* 1 if the vectorized int8/int4 codec of the map (bits, is_signed) runs (its bucket table is exact), 0 if
 * fo_quantize_block stands in for it (the same codes, slower). */
int fo_optim_qcodec_exact(int bits, int is_signed);

/* The active path's vectorized codec on one block x[0..n) (n at most the format's block): 1 with codes and absmax
 * written, 0 (nothing written) where it would hand the block to fo_quantize_block. For the tests. */
int fo_optim_qcodec_encode(const float *x, int64_t n, int bits, int is_signed, uint8_t *codes, float *absmax);

#endif
