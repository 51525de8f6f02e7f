using System.Numerics;

namespace Mtfm.Tests.Attention;

/// <summary>
/// Naive float64 HSTU attention written straight from the spec: a dense N×N visibility matrix from the rule of §4,
/// then S, SiLU, 1/n(q) and the sums over all keys. Independent of the kernel's code.
/// </summary>
internal static class HstuDenseReference
{
    /// <summary>Bucket from the spec with exact integer math: floor(log2(1 + x/u)) = max k with 2^k·u ≤ u + x.</summary>
    public static int Bucket(long tq, long tk, int nb, long unit)
    {
        BigInteger dt = (BigInteger)tq - tk;
        if (dt.IsZero) return 0;
        BigInteger x = BigInteger.Abs(dt), u = unit;
        int k = 0;
        while ((BigInteger.One << (k + 1)) * u <= u + x) k++;
        int m = Math.Min(nb - 1, 1 + k);
        return dt > 0 ? m : nb - 1 + m;
    }

    public static bool[,] Mask(HstuTestBatch b)
    {
        int n = b.N;
        var inst = new int[n];
        for (int i = 0; i < b.Batch; i++)
            for (int t = b.Offsets[i]; t < b.Offsets[i + 1]; t++) inst[t] = i;
        var m = new bool[n, n];
        for (int q = 0; q < n; q++)
            for (int k = 0; k < n; k++)
            {
                if (inst[q] != inst[k]) continue;
                m[q, k] = b.Kind[k] switch
                {
                    0 => true,
                    1 => k == q || b.Time[k] < b.Time[q],
                    _ => k == q,
                };
            }
        return m;
    }

    /// <summary>Tensors as doubles without pads: q [NQ, h·dqk], k [N, g·dqk], v [N, g·dv], rab [h, T].</summary>
    public sealed class Inputs
    {
        public double[] Q = [], K = [], V = [], Rab = [], DO = [];

        public static Inputs From(HstuTestBatch b)
        {
            return new Inputs
            {
                Q = Strip(b.Q, b.NumQueries, b.H * b.Dqk, b.Ldq),
                K = Strip(b.K, b.N, b.G * b.Dqk, b.Ldk),
                V = Strip(b.V, b.N, b.G * b.Dv, b.Ldv),
                Rab = b.Rab.Select(x => (double)x).ToArray(),
                DO = Strip(b.DO, b.NumQueries, b.H * b.Dv, b.Ldo),
            };
        }
    }

    public static double[] Strip(float[] a, int rows, int width, int ld)
    {
        var r = new double[rows * width];
        for (int i = 0; i < rows; i++)
            for (int c = 0; c < width; c++) r[i * width + c] = a[i * ld + c];
        return r;
    }

    private static double Sigmoid(double x) => 1.0 / (1.0 + Math.Exp(-x));

    /// <summary>O [NQ, h·dv].</summary>
    public static double[] Forward(HstuTestBatch b, bool[,] mask, Inputs x)
    {
        int h = b.H, g = b.G, dqk = b.Dqk, dv = b.Dv, n = b.N, tw = b.RabWidth, grp = h / g;
        double alpha = 1.0 / Math.Sqrt(dqk);
        var o = new double[b.NumQueries * h * dv];
        for (int i = 0; i < b.NumQueries; i++)
        {
            int t = b.QueryToken(i);
            int cnt = 0;
            for (int k = 0; k < n; k++) if (mask[t, k]) cnt++;
            for (int hd = 0; hd < h; hd++)
            {
                int kh = hd / grp;
                for (int k = 0; k < n; k++)
                {
                    if (!mask[t, k]) continue;
                    double dot = 0;
                    for (int d = 0; d < dqk; d++) dot += x.Q[i * h * dqk + hd * dqk + d] * x.K[k * g * dqk + kh * dqk + d];
                    double s = alpha * dot + x.Rab[hd * tw + Bucket(b.Time[t], b.Time[k], b.NumBuckets, b.Unit)];
                    double a = s * Sigmoid(s) / cnt;
                    for (int c = 0; c < dv; c++) o[i * h * dv + hd * dv + c] += a * x.V[k * g * dv + kh * dv + c];
                }
            }
        }
        return o;
    }

    /// <summary>Analytic gradients of L = Σ O ⊙ dO.</summary>
    public static (double[] dQ, double[] dK, double[] dV, double[] dRab) Backward(HstuTestBatch b, bool[,] mask, Inputs x)
    {
        int h = b.H, g = b.G, dqk = b.Dqk, dv = b.Dv, n = b.N, tw = b.RabWidth, grp = h / g;
        double alpha = 1.0 / Math.Sqrt(dqk);
        var dQ = new double[x.Q.Length];
        var dK = new double[x.K.Length];
        var dV = new double[x.V.Length];
        var dR = new double[x.Rab.Length];
        for (int i = 0; i < b.NumQueries; i++)
        {
            int t = b.QueryToken(i);
            int cnt = 0;
            for (int k = 0; k < n; k++) if (mask[t, k]) cnt++;
            for (int hd = 0; hd < h; hd++)
            {
                int kh = hd / grp;
                for (int k = 0; k < n; k++)
                {
                    if (!mask[t, k]) continue;
                    double dot = 0;
                    for (int d = 0; d < dqk; d++) dot += x.Q[i * h * dqk + hd * dqk + d] * x.K[k * g * dqk + kh * dqk + d];
                    int bk = Bucket(b.Time[t], b.Time[k], b.NumBuckets, b.Unit);
                    double s = alpha * dot + x.Rab[hd * tw + bk];
                    double sg = Sigmoid(s);
                    double a = s * sg / cnt;
                    double dA = 0;
                    for (int c = 0; c < dv; c++)
                    {
                        double gO = x.DO[i * h * dv + hd * dv + c];
                        dA += gO * x.V[k * g * dv + kh * dv + c];
                        dV[k * g * dv + kh * dv + c] += a * gO;
                    }
                    double ds = dA * (sg + s * sg * (1 - sg)) / cnt;
                    dR[hd * tw + bk] += ds;
                    for (int d = 0; d < dqk; d++)
                    {
                        dQ[i * h * dqk + hd * dqk + d] += alpha * ds * x.K[k * g * dqk + kh * dqk + d];
                        dK[k * g * dqk + kh * dqk + d] += alpha * ds * x.Q[i * h * dqk + hd * dqk + d];
                    }
                }
            }
        }
        return (dQ, dK, dV, dR);
    }

    public static double Loss(HstuTestBatch b, bool[,] mask, Inputs x)
    {
        var o = Forward(b, mask, x);
        double l = 0;
        for (int i = 0; i < o.Length; i++) l += o[i] * x.DO[i];
        return l;
    }
}
