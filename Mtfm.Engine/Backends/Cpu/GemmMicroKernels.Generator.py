# Generates GemmMicroKernels.Generated.cs (unrolled AVX-512 / AVX2 register-blocked SGEMM micro-kernels).
# Usage: python3 GemmMicroKernels.Generator.py 12x32,24x16 > GemmMicroKernels.Generated.cs
def avx512(MR, NR=32, strided=False):
    # strided: A's k steps are sa floats apart and B's sb (an operand read in place); otherwise packed (MR and NR apart).
    nv = NR//16
    L=[]
    if strided:
        L.append(f"    /// <summary>AVX-512 micro-kernel: a {MR}×{NR} block of C held in {MR*nv} zmm accumulators, A's k steps <paramref name=\"sa\"/> floats apart and B's")
        L.append(f"    /// <paramref name=\"sb\"/> (an operand read in place, or a packed panel with sa = {MR} / sb = {NR}); the same FMAs in the same order as <see cref=\"Avx512_{MR}x{NR}\"/>.</summary>")
    else:
        L.append(f"    /// <summary>AVX-512 micro-kernel: a {MR}×{NR} block of C held in {MR*nv} zmm accumulators.</summary>")
    L.append(f"    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit] // the edge tile is fully written before it is read")
    if strided:
        L.append(f"    internal static void Avx512_{MR}x{NR}_Strided(int kc, float* pa, int sa, float* pb, int sb, float* c, int ldc, float alpha, float beta, int mr, int nr)")
    else:
        L.append(f"    internal static void Avx512_{MR}x{NR}(int kc, float* pa, float* pb, float* c, int ldc, float alpha, float beta, int mr, int nr)")
    L.append("    {")
    accs=[f"c{i}_{v}" for i in range(MR) for v in range(nv)]
    L.append("        Vector512<float> " + ", ".join(a+" = default" for a in accs) + ";")
    L.append("        for (int p = 0; p < kc; p++)")
    L.append("        {")
    for v in range(nv):
        L.append(f"            var b{v} = Vector512.Load(pb + {16*v});")
    for i in range(MR):
        L.append(f"            var a{i} = Vector512.Create(pa[{i}]);")
        for v in range(nv):
            L.append(f"            c{i}_{v} = Avx512F.FusedMultiplyAdd(a{i}, b{v}, c{i}_{v});")
    L.append("            pa += sa;" if strided else f"            pa += {MR};")
    L.append("            pb += sb;" if strided else f"            pb += {NR};")
    L.append("        }")
    L.append(f"        if (mr == {MR} && nr == {NR})")
    L.append("        {")
    L.append("            var va = Vector512.Create(alpha);")
    L.append("            if (beta == 0f)")
    L.append("            {")
    for i in range(MR):
        for v in range(nv):
            L.append(f"                Vector512.Store(va * c{i}_{v}, c + {i} * (long)ldc + {16*v});")
    L.append("            }")
    L.append("            else")
    L.append("            {")
    L.append("                var vb = Vector512.Create(beta);")
    for i in range(MR):
        for v in range(nv):
            L.append(f"                Store(va * c{i}_{v}, vb, c + {i} * (long)ldc + {16*v});")
    L.append("            }")
    L.append("            return;")
    L.append("        }")
    L.append(f"        float* t = stackalloc float[{MR*NR}];")
    for i in range(MR):
        for v in range(nv):
            L.append(f"        Vector512.Store(c{i}_{v}, t + {i*NR+16*v});")
    L.append(f"        UpdateEdge(t, {NR}, c, ldc, alpha, beta, mr, nr);")
    L.append("    }")
    return "\n".join(L)

def avx2(MR, NR=16):
    nv = NR//8
    L=[]
    L.append(f"    /// <summary>AVX2+FMA micro-kernel: a {MR}×{NR} block of C held in {MR*nv} ymm accumulators.</summary>")
    L.append(f"    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit] // the edge tile is fully written before it is read")
    L.append(f"    internal static void Avx2_{MR}x{NR}(int kc, float* pa, float* pb, float* c, int ldc, float alpha, float beta, int mr, int nr)")
    L.append("    {")
    accs=[f"c{i}_{v}" for i in range(MR) for v in range(nv)]
    L.append("        Vector256<float> " + ", ".join(a+" = default" for a in accs) + ";")
    L.append("        for (int p = 0; p < kc; p++)")
    L.append("        {")
    for v in range(nv):
        L.append(f"            var b{v} = Vector256.Load(pb + {8*v});")
    for i in range(MR):
        L.append(f"            var a{i} = Vector256.Create(pa[{i}]);")
        for v in range(nv):
            L.append(f"            c{i}_{v} = Fma.MultiplyAdd(a{i}, b{v}, c{i}_{v});")
    L.append(f"            pa += {MR};")
    L.append(f"            pb += {NR};")
    L.append("        }")
    L.append(f"        if (mr == {MR} && nr == {NR})")
    L.append("        {")
    L.append("            var va = Vector256.Create(alpha);")
    L.append("            if (beta == 0f)")
    L.append("            {")
    for i in range(MR):
        for v in range(nv):
            L.append(f"                Vector256.Store(va * c{i}_{v}, c + {i} * (long)ldc + {8*v});")
    L.append("            }")
    L.append("            else")
    L.append("            {")
    L.append("                var vb = Vector256.Create(beta);")
    for i in range(MR):
        for v in range(nv):
            L.append(f"                Store(va * c{i}_{v}, vb, c + {i} * (long)ldc + {8*v});")
    L.append("            }")
    L.append("            return;")
    L.append("        }")
    L.append(f"        float* t = stackalloc float[{MR*NR}];")
    for i in range(MR):
        for v in range(nv):
            L.append(f"        Vector256.Store(c{i}_{v}, t + {i*NR+8*v});")
    L.append(f"        UpdateEdge(t, {NR}, c, ldc, alpha, beta, mr, nr);")
    L.append("    }")
    return "\n".join(L)

import sys
mrs=[tuple(int(y) for y in x.split("x")) for x in sys.argv[1].split(",")]
print("""// <auto-generated> by GemmMicroKernels.Generator.py: python3 GemmMicroKernels.Generator.py 12x32,24x16 > GemmMicroKernels.Generated.cs </auto-generated>
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Register-blocked SGEMM micro-kernels over packed panels: A packed as kc × MR (MR values per k step), B packed as
/// kc × NR. Each computes acc = Σ_p a[p]·b[p] in k order with FMA, then C = alpha·acc + beta·C (beta = 0: C not read).
/// The _Strided forms take each operand's k-step distance, so an operand whose k steps are already contiguous runs of
/// MR (or NR) values (Aᵀ, or B untransposed) is read in place.
/// </summary>
internal static unsafe partial class GemmMicroKernels
{""")
for mr, nr in mrs:
    print(avx512(mr, nr)); print()
    print(avx512(mr, nr, strided=True)); print()
print(avx2(6)); print()
print("""    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector512<float> scaled, Vector512<float> vb, float* c)
        => Vector512.Store(scaled + vb * Vector512.Load(c), c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector256<float> scaled, Vector256<float> vb, float* c)
        => Vector256.Store(scaled + vb * Vector256.Load(c), c);
}""")
