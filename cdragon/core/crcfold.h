/* CrcFold: zlib's CRC-32 (the reflected IEEE polynomial 0xEDB88320, with zlib's
 * pre- and post-inversion), computed 64 bytes a step with carry-less multiplication
 * (PCLMULQDQ) where the CPU has it, and with a byte table elsewhere and for the few
 * bytes at either end. The write-ahead log checks every record with this CRC; on a
 * 10 KB record zlib's own loop took about 2.5 us here, a sizeable share of the write.
 *
 * How the folding works (the method of Intel's paper "Fast CRC Computation for Generic
 * Polynomials Using PCLMULQDQ", for a bit-reflected CRC): four 128-bit lanes hold the
 * message so far; moving a lane 512 bits further along the message is a multiplication
 * by x^(512+64) and x^512 mod P (the constants K1 / K2), done on its two 64-bit halves.
 * At the end the lanes fold into one (by 128 bits: K3 / K4), the 128 bits reduce to 64,
 * then to 32 with K5, and a Barrett reduction (P and mu = x^64 / P) gives the CRC.
 * Results are checked against zlib for every length and alignment in the tests. */
#ifndef CDRAGON_CRCFOLD_H
#define CDRAGON_CRCFOLD_H
#include <stddef.h>
#include <stdint.h>

static uint32_t cd_crc_table[256];
static int cd_crc_fold_ok = 0;       /* 1: the CPU can fold */

/* fills the table and checks the CPU: call once before any cd_crc32 (walbody.pyx does,
 * at import) */
static void cd_crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        cd_crc_table[i] = c;
    }
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    cd_crc_fold_ok = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#else
    cd_crc_fold_ok = 0;
#endif
}

/* the running (inverted) CRC c over p[0..n), a byte at a time */
static inline uint32_t cd_crc_bytes(uint32_t c, const unsigned char *p, size_t n)
{
    while (n--)
        c = cd_crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>

/* one lane moved 128 * k bits on (k: K as lo = for its low half, hi = for its high
 * half) and the next 16 bytes of the message added */
#define CD_FOLD(x, k, next) \
    _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128((x), (k), 0x00), \
                                _mm_clmulepi64_si128((x), (k), 0x11)), (next))

/* the running (inverted) CRC c over p[0..n), n >= 64 and a multiple of 16 */
__attribute__((target("pclmul,sse4.1")))
static uint32_t cd_crc_fold(uint32_t c, const unsigned char *p, size_t n)
{
    const __m128i k1k2 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL);
    const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL);
    const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124LL);
    const __m128i poly_mu = _mm_set_epi64x(0x1f7011641LL, 0x1db710641LL);
    const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);
    __m128i x0 = _mm_loadu_si128((const __m128i *)p);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    __m128i t;
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)c));
    p += 64;
    n -= 64;
    while (n >= 64) {
        x0 = CD_FOLD(x0, k1k2, _mm_loadu_si128((const __m128i *)p));
        x1 = CD_FOLD(x1, k1k2, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = CD_FOLD(x2, k1k2, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = CD_FOLD(x3, k1k2, _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        n -= 64;
    }
    /* four lanes into one, then the remaining 16-byte blocks */
    x0 = CD_FOLD(x0, k3k4, x1);
    x0 = CD_FOLD(x0, k3k4, x2);
    x0 = CD_FOLD(x0, k3k4, x3);
    while (n >= 16) {
        x0 = CD_FOLD(x0, k3k4, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        n -= 16;
    }
    /* 128 bits -> 64 (the low half times K4 added to the high half, which also appends
     * the 32 zero bits a CRC's message gets), -> 32 more with K5 */
    t = _mm_clmulepi64_si128(x0, k3k4, 0x10);
    x0 = _mm_xor_si128(_mm_srli_si128(x0, 8), t);
    t = _mm_clmulepi64_si128(_mm_and_si128(x0, low32), k5, 0x00);
    x0 = _mm_xor_si128(_mm_srli_si128(x0, 4), t);
    /* Barrett: q = (low 32 bits * mu) low 32 bits, then x + q * P */
    t = _mm_and_si128(_mm_clmulepi64_si128(_mm_and_si128(x0, low32), poly_mu, 0x10), low32);
    t = _mm_clmulepi64_si128(t, poly_mu, 0x00);
    x0 = _mm_xor_si128(x0, t);
    return (uint32_t)_mm_extract_epi32(x0, 1);
}
#undef CD_FOLD
#endif

/* zlib's crc32(crc, p, n) */
static uint32_t cd_crc32(uint32_t crc, const unsigned char *p, size_t n)
{
    uint32_t c = ~crc;
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    if (n >= 64 && cd_crc_fold_ok) {
        size_t body = n & ~(size_t)15;
        c = cd_crc_fold(c, p, body);
        p += body;
        n -= body;
    }
#endif
    return ~cd_crc_bytes(c, p, n);
}

#endif
