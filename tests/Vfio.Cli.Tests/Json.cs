using System.Text.Json;

namespace Vfio.Cli.Tests;

/// <summary>Parses the command's JSON output back, the way a script would.</summary>
internal static class Json
{
    public static JsonElement Parse(string text)
    {
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }

    public static IEnumerable<string?> Strings(this JsonElement array, string property) =>
        array.EnumerateArray().Select(e => e.GetProperty(property).GetString());
}
