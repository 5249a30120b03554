// Fused selective-scan forward pass of Mamba's S6 layer (Gu & Dao 2023, Algorithm 2), compiled
// at run time by NVRTC from src/scan/cuda_fused/mod.rs, once per device and element type.
//
//   Δ'_t = softplus(Δ_t + bias)                    (or Δ_t + bias without the softplus)
//   h_t  = exp(Δ'_t A) ⊙ h_{t-1} + Δ'_t B_t u_t     Eq. (2a): zero-order hold for A, Euler for B
//   y_t  = C_t · h_t + D u_t                       Eq. (2b), plus the skip connection
//   y_t *= z_t σ(z_t)                              the gate, when z is given
//
// for every batch element b, channel d (of d_inner) and state n (of d_state), in fp32 whatever
// the element type: the semantics of mamba_ssm's selective_scan_fn and of src/scan/reference.rs.
//
// Defines that mod.rs sets (there are no defaults here, so the two files cannot drift apart):
//   SCAN_ELEM_F32 | SCAN_ELEM_BF16 | SCAN_ELEM_F16   element type of u, Δ, B, C, z and y
//   SCAN_CHUNK                   time steps per shared-memory tile
//   SCAN_MAX_STATES_PER_THREAD   register slots for h per thread, so d_state ≤ 32 × this
//   SCAN_MAX_THREADS             the largest block mod.rs launches (for __launch_bounds__)
//
// No header is included. NVRTC provides the math functions and intrinsics used here by itself,
// and the two 16-bit conversions are written out, so compiling never depends on where (or
// whether) the CUDA headers are installed on the machine that runs the binary.
//
// Work decomposition
// ------------------
// One thread owns one state n of one channel (or up to SCAN_MAX_STATES_PER_THREAD states when
// d_state > 32) and keeps h in registers for the whole sequence: the state never goes to global
// memory, and the reference's (batch, d_inner, seq_len, d_state) tensors never exist. The S
// lanes of a channel (S = d_state rounded up to a power of two, at most 32) are consecutive
// lanes of one warp, so C_t · h_t is a butterfly of S-lane shuffles. A block holds
// `channels` = blockDim.x / S channels of one batch element; the grid is
// (ceil(d_inner / channels), batch).
//
// Time is walked sequentially, SCAN_CHUNK steps at a time. For each chunk the block stages Δ'
// (bias and softplus applied once per element, not once per state), u, B and C in shared
// memory with coalesced loads (consecutive threads read consecutive time steps), runs the
// recurrence out of shared memory, gathers y_t = C_t · h_t in a shared tile, and writes y back,
// coalesced, with the skip connection and the gate applied.
//
// Next steps, roughly in order of expected gain:
// - Parallelism across time. Walking time sequentially leaves batch × d_inner × S threads,
//   which underfills an H100/H200 (132 SMs × 2048 threads) at small batch sizes. mamba_ssm
//   instead scans each chunk in parallel over time, with a block-wide associative scan of the
//   pairs (exp(Δ'A), Δ'B u) and a running prefix carried across chunks. Either adopt that, or
//   split long sequences into segments scanned concurrently and fixed up with the segment-end
//   states.
// - Double-buffer the tiles (cp.async) so that chunk k+1 loads while chunk k is scanned.
// - 16-byte vectorised loads and stores of the tiles.
// - Every block of a batch element re-reads that element's B and C (d_inner / channels times,
//   mostly from L2). Larger blocks, or one tile shared across a thread-block cluster, cut that.
// - d_state up to 256 (mamba_ssm's limit) needs more register slots per thread and more than
//   48 KiB of shared memory, which a launch must opt into (cuFuncSetAttribute).

#if defined(SCAN_ELEM_F32)
typedef float elem_t;

__device__ __forceinline__ float to_float(elem_t x) { return x; }
__device__ __forceinline__ elem_t from_float(float x) { return x; }

#elif defined(SCAN_ELEM_BF16)
// bfloat16 handled as its raw bits: cuda_bf16.h is not worth an include path for two
// conversions.
typedef unsigned short elem_t;

// A bfloat16 is the upper half of an fp32, so widening is exact: a shift.
__device__ __forceinline__ float to_float(elem_t x) {
    return __uint_as_float(((unsigned int)x) << 16);
}

// Narrowing rounds to nearest, ties to even, as c10::BFloat16 does, so y matches the
// reference's `to_kind(BFloat16)` bit for bit given the same fp32 value. Every NaN becomes the
// canonical quiet NaN, as in c10 (adding the rounding bias could turn a NaN into an infinity).
__device__ __forceinline__ elem_t from_float(float x) {
    unsigned int bits = __float_as_uint(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        return (elem_t)0x7fc0u;
    }
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (elem_t)(bits >> 16);
}

#elif defined(SCAN_ELEM_F16)
// IEEE half handled as its raw bits. The hardware converts each way in one instruction: the
// same PTX that cuda_fp16.h's __half2float and __float2half_rn emit.
typedef unsigned short elem_t;

__device__ __forceinline__ float to_float(elem_t x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x));
    return f;
}

__device__ __forceinline__ elem_t from_float(float f) {
    elem_t x;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(x) : "f"(f));
    return x;
}

#else
#error "mod.rs defines one of SCAN_ELEM_F32, SCAN_ELEM_BF16 and SCAN_ELEM_F16"
#endif

#if !defined(SCAN_CHUNK) || !defined(SCAN_MAX_STATES_PER_THREAD) || !defined(SCAN_MAX_THREADS)
#error "mod.rs defines SCAN_CHUNK, SCAN_MAX_STATES_PER_THREAD and SCAN_MAX_THREADS"
#endif

// Row stride, in floats, of every shared tile. The +1 staggers rows across the 32 banks: in
// the recurrence the lanes of a warp read column t of different rows (channels, or states),
// which with a stride of exactly 32 words would all fall into one bank.
#define TILE_STRIDE (SCAN_CHUNK + 1)

// log2(e): exp(x) = exp2(x log2 e), and exp2f maps onto the hardware's ex2 unit. mamba_ssm
// pre-scales A the same way.
#define LOG2E 1.4426950408889634f

// softplus(x) = log(1 + e^x), and x itself above 20, exactly as torch's softplus (beta 1,
// threshold 20) and mamba_ssm compute it. The branch also keeps e^x from overflowing.
__device__ __forceinline__ float softplus(float x) {
    return x > 20.f ? x : log1pf(expf(x));
}

// SiLU(x) = x σ(x) = x / (1 + e^-x). For very negative x, e^-x is +inf and the result -0.
__device__ __forceinline__ float silu(float x) {
    return x / (1.f + expf(-x));
}

// One launch computes y, and the last state when h_last is not null.
//
// Every pointer is the start of a contiguous, row-major tensor of the shape noted (mod.rs
// checks the shapes and makes the tensors contiguous). Null marks an optional input as absent.
// blockDim.x is a multiple of 32 and of `lanes`; the dynamic shared memory holds
// (3 × channels + 2 × d_state) × TILE_STRIDE floats.
extern "C" __global__ void __launch_bounds__(SCAN_MAX_THREADS) selective_scan_fwd(
    const elem_t* __restrict__ u,          // (batch, d_inner, seq_len)
    const elem_t* __restrict__ delta,      // (batch, d_inner, seq_len), before bias and softplus
    const float* __restrict__ A,           // (d_inner, d_state)
    const elem_t* __restrict__ B,          // (batch, d_state, seq_len)
    const elem_t* __restrict__ C,          // (batch, d_state, seq_len)
    const float* __restrict__ D,           // (d_inner,), or null: no skip connection
    const elem_t* __restrict__ z,          // (batch, d_inner, seq_len), or null: no gate
    const float* __restrict__ delta_bias,  // (d_inner,), or null: no bias
    const float* __restrict__ h0,          // (batch, d_inner, d_state), or null: start from 0
    elem_t* __restrict__ y,                // (batch, d_inner, seq_len), written
    float* __restrict__ h_last,            // (batch, d_inner, d_state), written unless null
    int d_inner,
    int d_state,
    int seq_len,
    int lanes,           // S: lanes per channel, a power of two ≤ 32
    int delta_softplus)  // nonzero: Δ' = softplus(Δ + bias)
{
    // Shared tiles, rows of TILE_STRIDE floats: Δ', u and C·h per channel, B and C per state.
    extern __shared__ float smem[];
    const int channels = blockDim.x / lanes;
    float* delta_tile = smem;                            // [channels][TILE_STRIDE]
    float* u_tile = delta_tile + channels * TILE_STRIDE; // [channels][TILE_STRIDE]
    float* ch_tile = u_tile + channels * TILE_STRIDE;    // [channels][TILE_STRIDE]
    float* b_tile = ch_tile + channels * TILE_STRIDE;    // [d_state][TILE_STRIDE]
    float* c_tile = b_tile + d_state * TILE_STRIDE;      // [d_state][TILE_STRIDE]

    const int batch_idx = blockIdx.y;
    const int first_channel = blockIdx.x * channels;
    const int local = threadIdx.x / lanes;  // this thread's channel within the block
    const int lane = threadIdx.x % lanes;   // and its lane within that channel's group
    const int channel = first_channel + local;
    const bool active = channel < d_inner;  // the last block may reach past d_inner

    // Offsets are 64-bit: batch × d_inner × seq_len can pass 2^31.
    const long long len = seq_len;
    const long long token_base = (long long)batch_idx * d_inner * len;  // u, Δ, z, y
    const long long bc_base = (long long)batch_idx * d_state * len;     // B, C
    const long long state_base = ((long long)batch_idx * d_inner + channel) * d_state;

    // This thread's states n = lane + k S: A (pre-scaled for exp2f) and h, in registers (the
    // loops over k are unrolled, so every index is a constant). Slots with n ≥ d_state are
    // never touched. A channel past d_inner keeps A = 0 and h = 0; its Δ' tile row is zero, so
    // its h stays 0, and its sums are never written back.
    float a[SCAN_MAX_STATES_PER_THREAD];
    float h[SCAN_MAX_STATES_PER_THREAD];
#pragma unroll
    for (int k = 0; k < SCAN_MAX_STATES_PER_THREAD; ++k) {
        const int n = lane + k * lanes;
        const bool owned = active && n < d_state;
        a[k] = owned ? A[(long long)channel * d_state + n] * LOG2E : 0.f;
        h[k] = owned && h0 != nullptr ? h0[state_base + n] : 0.f;
    }

    for (long long t0 = 0; t0 < len; t0 += SCAN_CHUNK) {
        const long long remaining = len - t0;
        const int steps = remaining < SCAN_CHUNK ? (int)remaining : SCAN_CHUNK;

        // 1. Stage the chunk. Consecutive threads take consecutive time steps of one row, so a
        //    warp reads whole runs of global memory. Cells past the sequence or past d_inner
        //    hold zeros.
        for (int i = threadIdx.x; i < channels * SCAN_CHUNK; i += blockDim.x) {
            const int row = i / SCAN_CHUNK;
            const int t = i % SCAN_CHUNK;
            const int ch = first_channel + row;
            float dt = 0.f;
            float uv = 0.f;
            if (ch < d_inner && t < steps) {
                const long long at = token_base + (long long)ch * len + t0 + t;
                uv = to_float(u[at]);
                dt = to_float(delta[at]) + (delta_bias != nullptr ? delta_bias[ch] : 0.f);
                if (delta_softplus) {
                    dt = softplus(dt);
                }
            }
            delta_tile[row * TILE_STRIDE + t] = dt;
            u_tile[row * TILE_STRIDE + t] = uv;
        }
        for (int i = threadIdx.x; i < d_state * SCAN_CHUNK; i += blockDim.x) {
            const int n = i / SCAN_CHUNK;
            const int t = i % SCAN_CHUNK;
            float bv = 0.f;
            float cv = 0.f;
            if (t < steps) {
                const long long at = bc_base + (long long)n * len + t0 + t;
                bv = to_float(B[at]);
                cv = to_float(C[at]);
            }
            b_tile[n * TILE_STRIDE + t] = bv;
            c_tile[n * TILE_STRIDE + t] = cv;
        }
        __syncthreads();

        // 2. The recurrence, one step at a time, out of shared memory.
        for (int t = 0; t < steps; ++t) {
            const float dt = delta_tile[local * TILE_STRIDE + t];
            const float dt_u = dt * u_tile[local * TILE_STRIDE + t];
            float c_dot_h = 0.f;
#pragma unroll
            for (int k = 0; k < SCAN_MAX_STATES_PER_THREAD; ++k) {
                const int n = lane + k * lanes;
                if (n < d_state) {
                    // Eq. (2a): h_t = exp(Δ' A) h_{t-1} + Δ' u B_t
                    h[k] = fmaf(exp2f(dt * a[k]), h[k], dt_u * b_tile[n * TILE_STRIDE + t]);
                    // Eq. (2b): this thread's share of C_t · h_t
                    c_dot_h = fmaf(c_tile[n * TILE_STRIDE + t], h[k], c_dot_h);
                }
            }
            // Sum over the channel's S lanes. They are S consecutive lanes of one warp, aligned
            // to S, so xor offsets below S never leave the group. The full mask is right: every
            // lane of every warp gets here, since `steps` is the same across the block and
            // blockDim.x is a multiple of 32.
            for (int offset = lanes >> 1; offset > 0; offset >>= 1) {
                c_dot_h += __shfl_xor_sync(0xffffffffu, c_dot_h, offset);
            }
            if (lane == 0) {
                ch_tile[local * TILE_STRIDE + t] = c_dot_h;
            }
        }
        __syncthreads();

        // 3. y = (C·h + D u) · SiLU(z), written back in the loads' coalesced order.
        for (int i = threadIdx.x; i < channels * SCAN_CHUNK; i += blockDim.x) {
            const int row = i / SCAN_CHUNK;
            const int t = i % SCAN_CHUNK;
            const int ch = first_channel + row;
            if (ch < d_inner && t < steps) {
                const long long at = token_base + (long long)ch * len + t0 + t;
                float out = ch_tile[row * TILE_STRIDE + t];
                if (D != nullptr) {
                    out = fmaf(D[ch], u_tile[row * TILE_STRIDE + t], out);
                }
                if (z != nullptr) {
                    out *= silu(to_float(z[at]));
                }
                y[at] = from_float(out);
            }
        }
        // The next chunk's staging overwrites the tiles that this epilogue reads.
        __syncthreads();
    }

    if (h_last != nullptr && active) {
#pragma unroll
        for (int k = 0; k < SCAN_MAX_STATES_PER_THREAD; ++k) {
            const int n = lane + k * lanes;
            if (n < d_state) {
                h_last[state_base + n] = h[k];
            }
        }
    }
}
