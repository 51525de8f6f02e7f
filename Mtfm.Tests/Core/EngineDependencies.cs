using System.Reflection;
using System.Reflection.Emit;

namespace Mtfm.Tests.Core;

/// <summary>
/// Which areas of the engine (the first namespace segment after <c>Mtfm.Engine</c>: Backends, Data, Model, …) each
/// area references, read from the compiled assemblies rather than from <c>using</c> lines: every type's base type,
/// interfaces, fields, method signatures and every type, method and field token in its method bodies (compiler-made
/// closures and state machines are nested types, so they count for the type that wrote the lambda). A reference
/// spelled any way in the source (a using, a fully qualified name, a name relative to a parent namespace) is seen;
/// documentation crefs, which compile to nothing, are not.
/// </summary>
internal static class EngineDependencies
{
    private const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance |
        BindingFlags.Static | BindingFlags.DeclaredOnly;

    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!)
        .ToDictionary(o => o.Value);

    /// <summary>The area of a namespace (<c>Mtfm.Engine.Backends.Cuda</c> → <c>Backends</c>), or null outside the engine.</summary>
    public static string? Area(string? ns)
    {
        const string root = "Mtfm.Engine";
        if (ns is null || !ns.StartsWith(root, StringComparison.Ordinal)) return null;
        if (ns.Length == root.Length) return "";
        if (ns[root.Length] != '.') return null;
        int end = ns.IndexOf('.', root.Length + 1);
        return end < 0 ? ns[(root.Length + 1)..] : ns[(root.Length + 1)..end];
    }

    /// <summary>
    /// Every (from area, to area) edge between different areas, each with one example
    /// (<c>Type.Member → Type</c>) for messages.
    /// </summary>
    public static Dictionary<(string From, string To), string> Edges(params Assembly[] assemblies)
    {
        var edges = new Dictionary<(string, string), string>();
        foreach (var asm in assemblies)
            foreach (var type in asm.GetTypes())
            {
                string? from = Area(Outermost(type).Namespace);
                if (from is null) continue;
                void Add(Type? target, string where)
                {
                    foreach (var t in Expand(target))
                    {
                        string? to = Area(Outermost(t).Namespace);
                        if (to is null || to == from) continue;
                        edges.TryAdd((from, to), $"{type.FullName}{where} → {t.FullName}");
                    }
                }
                Add(type.BaseType, " (base)");
                foreach (var i in type.GetInterfaces()) Add(i, " (interface)");
                foreach (var f in type.GetFields(All)) Add(f.FieldType, "." + f.Name);
                foreach (var p in type.GetProperties(All)) Add(p.PropertyType, "." + p.Name);
                foreach (var m in type.GetMethods(All).Cast<MethodBase>().Concat(type.GetConstructors(All)))
                {
                    string where = "." + m.Name;
                    if (m is MethodInfo mi) Add(mi.ReturnType, where);
                    foreach (var p in m.GetParameters()) Add(p.ParameterType, where);
                    foreach (var t in BodyReferences(m)) Add(t, where);
                }
            }
        return edges;
    }

    private static Type Outermost(Type t)
    {
        while (t.DeclaringType is { } outer && !t.IsGenericParameter) t = outer;
        return t;
    }

    /// <summary>A type and what it is built from: element types and generic arguments.</summary>
    private static IEnumerable<Type> Expand(Type? t)
    {
        if (t is null || t.IsGenericParameter) yield break;
        if (t.HasElementType)
        {
            foreach (var e in Expand(t.GetElementType())) yield return e;
            yield break;
        }
        yield return t;
        if (t.IsConstructedGenericType)
            foreach (var a in t.GetGenericArguments())
                foreach (var e in Expand(a)) yield return e;
    }

    /// <summary>The declaring types of every method, field and type token in a method body.</summary>
    private static IEnumerable<Type> BodyReferences(MethodBase method)
    {
        byte[]? il;
        try { il = method.GetMethodBody()?.GetILAsByteArray(); }
        catch (InvalidOperationException) { yield break; }
        if (il is null) yield break;
        var module = method.Module;
        Type[]? typeArgs = method.DeclaringType is { IsGenericType: true } dt ? dt.GetGenericArguments() : null;
        Type[]? methodArgs = method.IsGenericMethod ? method.GetGenericArguments() : null;
        int pos = 0;
        while (pos < il.Length)
        {
            short value = il[pos++];
            if (value == 0xFE) value = (short)(0xFE00 | il[pos++]);
            if (!OpCodesByValue.TryGetValue(value, out var op))
                throw new InvalidOperationException($"{method.DeclaringType}.{method.Name}: unknown IL opcode 0x{value:X} at {pos}");
            switch (op.OperandType)
            {
                case OperandType.InlineMethod:
                case OperandType.InlineField:
                case OperandType.InlineType:
                case OperandType.InlineTok:
                    {
                        int token = BitConverter.ToInt32(il, pos);
                        pos += 4;
                        MemberInfo? member;
                        try { member = module.ResolveMember(token, typeArgs, methodArgs); }
                        catch (ArgumentException) { member = null; }
                        if (member is Type t) yield return t;
                        else if (member?.DeclaringType is { } decl) yield return decl;
                        if (member is MethodInfo { IsGenericMethod: true } gm)
                            foreach (var a in gm.GetGenericArguments()) yield return a;
                        break;
                    }
                case OperandType.InlineSwitch:
                    pos += 4 + 4 * BitConverter.ToInt32(il, pos);
                    break;
                default:
                    pos += OperandSize(op.OperandType);
                    break;
            }
        }
    }

    private static int OperandSize(OperandType t) => t switch
    {
        OperandType.InlineNone => 0,
        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
        OperandType.InlineVar => 2,
        OperandType.InlineI8 or OperandType.InlineR => 8,
        _ => 4, // InlineBrTarget, InlineI, InlineSig, InlineString, ShortInlineR
    };
}
