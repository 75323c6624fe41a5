/* fastopt blockwise quantization primitives: see quantize.h for the rule, the maps and the layout.
 *
 * The fast path. code(v) is non-decreasing in v (quantize.h), so it is the number of thresholds T_k <= v, T_k the
 * least float32 v with code(v) >= k (k = 1 .. 2^bits - 1). At first use (pthread_once) every T_k is found by
 * bisection over the float32 values between map[k-1] and map[k] with the rule itself, and a bucket table is built:
 * the bucket of v is its sign and the top 16 bits of |v| (exponent and 7 mantissa bits: a relative width of at most
 * 2^-7), |v| < 2^-24 all in bucket 0, and lo[sign][bucket] is the code of the bucket's least v. Every map's
 * relative spacing is at least 0.7% (bitsandbytes' unsigned map near 1) and none has a threshold below 2^-24 in
 * magnitude, so a bucket holds at most two thresholds (checked at init for every bucket) and
 *     code(v) = lo + (v >= T[lo+1]) + (v >= T[lo+2])           (T[2^bits] = T[2^bits + 1] = +inf)
 * exactly: one byte load, two float loads and compares per element, no branch. (Were the check to fail for a map,
 * that map would use a binary search over its thresholds instead: same codes, slower.) */
#include "quantize.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "quantize_maps.inc"

#define FO_QE0 103                                  /* biased exponent of 2^-24: |v| below it is bucket 0 */
#define FO_QNB ((127 - FO_QE0 + 1) * 128 + 2)       /* buckets per sign: bucket 0, then 2^-24 .. [1, 1 + 2^-7) */
#define FO_QCHUNK 256                               /* elements divided per pass (a stack buffer) */

typedef struct fo_qtab {
    const float *map;
    int size;                    /* 2^bits */
    int fast;                    /* every bucket holds at most two thresholds */
    uint8_t zero;                /* code(0) */
    float thr[FO_QBLOCK_INT8 + 2];   /* thr[k] = T_k, k = 1 .. size-1; thr[size], thr[size+1] = +inf */
    uint8_t lo[2][FO_QNB];       /* [sign of v][bucket]: code of the bucket's least v */
} fo_qtab;

static fo_qtab fo_qtabs[4];      /* 8 signed, 8 unsigned, 4 signed, 4 unsigned */
static pthread_once_t fo_qonce = PTHREAD_ONCE_INIT;

FO_INLINE float fo_qf(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

FO_INLINE uint32_t fo_qu(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* float32 values in their order as unsigned integers (-0 just below +0) and back. */
FO_INLINE uint32_t fo_qord(float f)
{
    const uint32_t u = fo_qu(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

FO_INLINE float fo_qunord(uint32_t o)
{
    return fo_qf((o & 0x80000000u) ? (o & 0x7FFFFFFFu) : ~o);
}

const float *fo_qmap(int bits, int is_signed)
{
    if (bits == 8)
        return is_signed ? fo_qmap8_signed : fo_qmap8_unsigned;
    if (bits == 4)
        return is_signed ? fo_qmap4_signed : fo_qmap4_unsigned;
    return 0;
}

/* The rule of quantize.h, evaluated directly. */
static int fo_qrule(const float *map, int size, float v)
{
    int lo = 0, hi = size, l;                      /* count of map[c] <= v, by bisection */
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (map[mid] <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    l = lo > 0 ? lo - 1 : 0;
    if (l + 1 < size && fabsf(v - map[l + 1]) < fabsf(v - map[l]))
        l += 1;
    return l;
}

/* #{k : v >= T_k} by binary search over the thresholds (the table builder and the fallback path). */
static int fo_qcount(const fo_qtab *t, float v)
{
    int lo = 1, hi = t->size;                      /* answer in [lo - 1, hi - 1] */
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (v >= t->thr[mid])
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

/* The least and the greatest float32 of bucket b on the side `neg` of zero. */
static void fo_qbucket_range(int b, int neg, float *least, float *greatest)
{
    const uint32_t a_lo = b == 0 ? 0u : ((uint32_t)(b - 1 + (FO_QE0 << 7)) << 16);
    const uint32_t a_hi = b == 0 ? ((uint32_t)FO_QE0 << 23) - 1u : (a_lo | 0xFFFFu);
    *least = neg ? -fo_qf(a_hi) : fo_qf(a_lo);
    *greatest = neg ? -fo_qf(a_lo) : fo_qf(a_hi);
}

static void fo_qtab_build(fo_qtab *t, const float *map, int size)
{
    int k, b, neg;
    t->map = map;
    t->size = size;
    t->thr[0] = -INFINITY;
    for (k = 1; k < size; ++k) {                   /* T_k in (map[k-1], map[k]]: code(map[c]) = c */
        uint32_t lo = fo_qord(map[k - 1]), hi = fo_qord(map[k]);
        while (hi - lo > 1) {
            const uint32_t mid = lo + (hi - lo) / 2;
            if (fo_qrule(map, size, fo_qunord(mid)) >= k)
                hi = mid;
            else
                lo = mid;
        }
        t->thr[k] = fo_qunord(hi);
    }
    t->thr[size] = t->thr[size + 1] = INFINITY;
    t->zero = (uint8_t)fo_qcount(t, 0.0f);
    t->fast = 1;
    for (neg = 0; neg < 2; ++neg)
        for (b = 0; b < FO_QNB; ++b) {
            float least, greatest;
            int c;
            fo_qbucket_range(b, neg, &least, &greatest);
            c = fo_qcount(t, least);
            t->lo[neg][b] = (uint8_t)c;
            if (fo_qcount(t, greatest) - c > 2)
                t->fast = 0;
        }
}

static void fo_qinit(void)
{
    fo_qtab_build(&fo_qtabs[0], fo_qmap8_signed, 256);
    fo_qtab_build(&fo_qtabs[1], fo_qmap8_unsigned, 256);
    fo_qtab_build(&fo_qtabs[2], fo_qmap4_signed, 16);
    fo_qtab_build(&fo_qtabs[3], fo_qmap4_unsigned, 16);
}

static const fo_qtab *fo_qtab_get(int bits, int is_signed)
{
    if (bits != 8 && bits != 4)
        return 0;
    pthread_once(&fo_qonce, fo_qinit);
    return &fo_qtabs[(bits == 8 ? 0 : 2) + (is_signed ? 0 : 1)];
}

/* code(v) by the bucket table, for v in [-1, 1] (no NaN) and t->fast: |v| <= 1 keeps the bucket below FO_QNB - 1. */
FO_INLINE int fo_qcode_table(const uint8_t *lo, const float *thr, float v)
{
    const uint32_t u = fo_qu(v);
    const int32_t b = (int32_t)((u & 0x7FFFFFFFu) >> 16) - (FO_QE0 << 7) + 1;
    const int c = lo[(u >> 31) * FO_QNB + (b < 0 ? 0 : b)];
    return c + (v >= thr[c + 1]) + (v >= thr[c + 2]);
}

/* Codes of v[0..m) into out (bits 8: one byte each; bits 4: two per byte, element 2j low). */
static void fo_qcodes(const fo_qtab *t, const float *v, int64_t m, int bits, uint8_t *out)
{
    const uint8_t *lo = &t->lo[0][0];
    const float *thr = t->thr;
    int64_t i;
    if (!t->fast) {
        for (i = 0; i < m; ++i) {
            const int c = fo_qcount(t, v[i]);
            if (bits == 8)
                out[i] = (uint8_t)c;
            else
                out[i / 2] = (uint8_t)((i & 1) ? (out[i / 2] | (c << 4)) : c);
        }
        return;
    }
    if (bits == 8) {
        for (i = 0; i < m; ++i)
            out[i] = (uint8_t)fo_qcode_table(lo, thr, v[i]);
        return;
    }
    for (i = 0; i + 1 < m; i += 2)
        out[i / 2] = (uint8_t)(fo_qcode_table(lo, thr, v[i]) | (fo_qcode_table(lo, thr, v[i + 1]) << 4));
    if (m & 1)
        out[m / 2] = (uint8_t)fo_qcode_table(lo, thr, v[m - 1]);
}

/* max_i |x_i| as float32 bits, compared as integers: exact for finite and inf; above 0x7f800000 iff a NaN. */
static uint32_t fo_qabsmax_bits(const float *x, int64_t n)
{
    uint32_t m = 0;
    int64_t i;
    for (i = 0; i < n; ++i) {
        uint32_t u;
        memcpy(&u, x + i, sizeof u);
        u &= 0x7FFFFFFFu;
        m = u > m ? u : m;
    }
    return m;
}

static void fo_qfill(uint8_t *codes, int64_t n, int bits, uint8_t c)
{
    if (bits == 8) {
        memset(codes, c, (size_t)n);
        return;
    }
    memset(codes, c | (c << 4), (size_t)(n / 2));
    if (n & 1)
        codes[n / 2] = c;
}

void fo_quantize_block(const float *x, int64_t n, int bits, int is_signed, uint8_t *codes, float *absmax)
{
    const fo_qtab *t = fo_qtab_get(bits, is_signed);
    uint32_t amax;
    float am, v[FO_QCHUNK];
    int64_t off, i;
    if (!t)
        return;
    if (n <= 0) {
        *absmax = 0.0f;
        return;
    }
    amax = fo_qabsmax_bits(x, n);
    if (amax == 0 || amax >= 0x7F800000u) {        /* zeros, or inf / NaN: see quantize.h */
        *absmax = fo_qf(amax > 0x7F800000u ? 0x7FC00000u : amax);
        fo_qfill(codes, n, bits, t->zero);
        return;
    }
    am = fo_qf(amax);
    *absmax = am;
    for (off = 0; off < n; off += FO_QCHUNK) {    /* off is even: a 4-bit chunk starts on a byte */
        const int64_t m = n - off < FO_QCHUNK ? n - off : FO_QCHUNK;
        for (i = 0; i < m; ++i)                    /* vectorized division */
            v[i] = x[off + i] / am;
        fo_qcodes(t, v, m, bits, codes + (bits == 8 ? off : off / 2));
    }
}

void fo_dequantize_block(const uint8_t *codes, int64_t n, int bits, int is_signed, float absmax, float *x)
{
    const float *map = fo_qmap(bits, is_signed);
    int64_t i;
    if (!map)
        return;
    if (bits == 8) {
        for (i = 0; i < n; ++i)
            x[i] = map[codes[i]] * absmax;
        return;
    }
    for (i = 0; i + 1 < n; i += 2) {
        const uint8_t c = codes[i / 2];
        x[i] = map[c & 15] * absmax;
        x[i + 1] = map[c >> 4] * absmax;
    }
    if (n & 1)
        x[n - 1] = map[codes[n / 2] & 15] * absmax;
}

int fo_qcode_reference(int bits, int is_signed, float v)
{
    const float *map = fo_qmap(bits, is_signed);
    return map ? fo_qrule(map, 1 << bits, v) : -1;
}

int fo_qcode(int bits, int is_signed, float v)
{
    const fo_qtab *t = fo_qtab_get(bits, is_signed);
    uint8_t c = 0;
    if (!t || !(v >= -1.0f && v <= 1.0f))
        return -1;
    fo_qcodes(t, &v, 1, 8, &c);                    /* the 8-bit layout: one byte, the same code */
    return c;
}

int fo_qtable_fast(int bits, int is_signed)
{
    const fo_qtab *t = fo_qtab_get(bits, is_signed);
    return t ? t->fast : -1;
}

float fo_qthreshold(int bits, int is_signed, int k)
{
    const fo_qtab *t = fo_qtab_get(bits, is_signed);
    return t && k >= 1 && k < t->size ? t->thr[k] : NAN;
}
