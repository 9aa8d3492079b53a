using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Vfio.User.Protocol;

/// <summary>
/// VFIO_USER_VERSION body: major u16, minor u16, then a NUL-terminated JSON object
/// <c>{"capabilities": {"max_msg_fds": N, "max_data_xfer_size": N, "pgsizes": N, "max_dma_maps": N, ...}}</c>.
/// Unknown members are ignored, absent ones take the spec's defaults.
/// </summary>
/// <param name="Major">Major version; only 0 exists.</param>
/// <param name="Minor">Minor version (1 is what this library speaks).</param>
/// <param name="Capabilities">The sender's limits.</param>
public sealed record VersionMessage(ushort Major, ushort Minor, VersionCapabilities Capabilities)
{
    /// <summary>The protocol version this library implements: 0.1.</summary>
    public const ushort CurrentMajor = 0, CurrentMinor = 1;

    /// <summary>Encodes the body.</summary>
    public byte[] Encode()
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(new VersionJson { Capabilities = Capabilities }, VfioUserJsonContext.Default.VersionJson);
        var b = new byte[4 + json.Length + 1];
        BinaryPrimitives.WriteUInt16LittleEndian(b, Major);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), Minor);
        json.CopyTo(b, 4);
        return b; // last byte stays 0: the NUL terminator
    }

    /// <summary>Decodes a body; a missing or empty JSON part means default capabilities.</summary>
    public static VersionMessage Read(ReadOnlySpan<byte> b)
    {
        Wire.Need(b, 4, Command.Version);
        var major = BinaryPrimitives.ReadUInt16LittleEndian(b);
        var minor = BinaryPrimitives.ReadUInt16LittleEndian(b[2..]);
        var json = b[4..];
        int nul = json.IndexOf((byte)0);
        if (nul >= 0) { json = json[..nul]; }
        var caps = new VersionCapabilities();
        if (!json.IsEmpty)
        {
            try
            {
                caps = JsonSerializer.Deserialize(json, VfioUserJsonContext.Default.VersionJson)?.Capabilities ?? caps;
            }
            catch (JsonException e)
            {
                throw VfioUserCommandException.Invalid(Command.Version, $"version data is not valid JSON: {e.Message}");
            }
        }
        if (caps.MaxMessageFds < 0 || caps.MaxDataTransferSize <= 0)
        {
            throw VfioUserCommandException.Invalid(Command.Version, "max_msg_fds must be >= 0 and max_data_xfer_size > 0");
        }
        return new VersionMessage(major, minor, caps);
    }
}

/// <summary>
/// The capabilities object of VFIO_USER_VERSION. Settable rather than init-only: the source-generated deserializer
/// assigns init-only properties in an object initializer, which would turn an absent member into 0 instead of the
/// spec's default.
/// </summary>
public sealed record VersionCapabilities
{
    /// <summary>Default max_data_xfer_size (1 MiB, the spec's default).</summary>
    public const int DefaultMaxDataTransferSize = 1 << 20;

    /// <summary>Most descriptors the sender accepts in one message (default 1).</summary>
    [JsonPropertyName("max_msg_fds")]
    public int MaxMessageFds { get; set; } = 1;

    /// <summary>Most data bytes in one region/DMA read or write the sender accepts.</summary>
    [JsonPropertyName("max_data_xfer_size")]
    public long MaxDataTransferSize { get; set; } = DefaultMaxDataTransferSize;

    /// <summary>Page sizes the sender supports for DMA mappings (bitmap).</summary>
    [JsonPropertyName("pgsizes")]
    public ulong PageSizes { get; set; } = 4096;

    /// <summary>Most DMA mappings the server accepts.</summary>
    [JsonPropertyName("max_dma_maps")]
    public int MaxDmaMaps { get; set; } = 65535;
}

internal sealed class VersionJson
{
    [JsonPropertyName("capabilities")]
    public VersionCapabilities? Capabilities { get; set; }
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(VersionJson))]
internal sealed partial class VfioUserJsonContext : JsonSerializerContext;
