namespace Mtfm.Engine.Data;

/// <summary>Malformed input data or schema. Messages name the file, row and column where they apply.</summary>
public sealed class DataFormatException : Exception
{
    /// <summary>Creates the exception.</summary>
    public DataFormatException(string message) : base(message) { }
    /// <summary>Creates the exception with an inner cause.</summary>
    public DataFormatException(string message, Exception inner) : base(message, inner) { }
}
