using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Vfio.Cli.Output;

/// <summary>
/// An ordered JSON document of named fields, for the documents that take nvme-cli's field names (<c>vfio nvme
/// id-ctrl|id-ns|smart-log|... --json</c>): their shape follows the NVMe structures rather than a C# record, and
/// 128-bit counters must stay JSON numbers. Values are strings, booleans, integers (UInt128 included), doubles,
/// null, nested <see cref="FieldJson"/> objects, or lists of those.
/// </summary>
internal sealed class FieldJson
{
    private readonly List<KeyValuePair<string, object?>> _fields = [];

    /// <summary>Adds a field (a name given twice is a bug: the last one would silently win in most readers).</summary>
    public FieldJson Add(string name, object? value)
    {
        if (_fields.Exists(f => f.Key == name)) { throw new InvalidOperationException($"JSON field '{name}' added twice"); }
        _fields.Add(new(name, value));
        return this;
    }

    /// <summary>Adds every (name, value) pair.</summary>
    public FieldJson AddRange(IEnumerable<(string Name, object? Value)> fields)
    {
        foreach (var (name, value) in fields) { Add(name, value); }
        return this;
    }

    /// <summary>The fields in order.</summary>
    public IReadOnlyList<KeyValuePair<string, object?>> Fields => _fields;

    /// <summary>The document, indented as the other <c>--json</c> documents are.</summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            Write(writer, this);
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void Write(Utf8JsonWriter w, object? value)
    {
        switch (value)
        {
            case null: w.WriteNullValue(); break;
            case string s: w.WriteStringValue(s); break;
            case bool b: w.WriteBooleanValue(b); break;
            case byte or ushort or uint or ulong: w.WriteNumberValue(Convert.ToUInt64(value, CultureInfo.InvariantCulture)); break;
            case sbyte or short or int or long: w.WriteNumberValue(Convert.ToInt64(value, CultureInfo.InvariantCulture)); break;
            // A 128-bit counter (SMART data units, TNVMCAP) is written as the exact decimal number, as nvme-cli does.
            case UInt128 u: w.WriteRawValue(u.ToString(CultureInfo.InvariantCulture), skipInputValidation: true); break;
            case double d: w.WriteNumberValue(d); break;
            case FieldJson o:
                w.WriteStartObject();
                foreach (var (name, v) in o._fields)
                {
                    w.WritePropertyName(name);
                    Write(w, v);
                }
                w.WriteEndObject();
                break;
            case System.Collections.IEnumerable list:
                w.WriteStartArray();
                foreach (var item in list) { Write(w, item); }
                w.WriteEndArray();
                break;
            default:
                throw new InvalidOperationException($"no JSON form for a {value.GetType().Name}");
        }
    }
}
