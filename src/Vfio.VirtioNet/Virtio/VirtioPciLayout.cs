using System.Buffers.Binary;
using Vfio.Devices;
using Vfio.Spec.Virtio;

namespace Vfio.VirtioNet.Virtio;

/// <summary>One virtio structure: which BAR it lives in, where and how long.</summary>
/// <param name="Type">The structure.</param>
/// <param name="Bar">BAR index 0-5.</param>
/// <param name="Offset">Offset of the structure within the BAR.</param>
/// <param name="Length">Length of the structure.</param>
/// <param name="CapabilityOffset">Where the capability sits in config space.</param>
public readonly record struct VirtioStructure(VirtioPciCapType Type, byte Bar, uint Offset, uint Length, int CapabilityOffset);

/// <summary>
/// Where a modern virtio PCI device keeps its structures, found by walking the vendor-specific capabilities of
/// config space (virtio 1.2 §4.1.4). Parsing is a pure function of config-space bytes, so it is tested on
/// recorded dumps.
/// </summary>
/// <param name="Common">Common configuration (features, status, queues).</param>
/// <param name="Notify">Notification area (queue doorbells).</param>
/// <param name="NotifyOffMultiplier">Bytes between doorbells per unit of <c>queue_notify_off</c> (§4.1.4.4).</param>
/// <param name="Isr">ISR status byte.</param>
/// <param name="Device">Device-specific configuration (for net: MAC, status, queue pairs, MTU); null if absent.</param>
public sealed record VirtioPciLayout(VirtioStructure Common, VirtioStructure Notify, uint NotifyOffMultiplier, VirtioStructure Isr, VirtioStructure? Device)
{
    /// <summary>Common configuration fields the driver uses end at queue_device + 8 (§4.1.4.3).</summary>
    public const uint MinCommonLength = VirtioPciCommonConfig.QueueDevice + 8;

    /// <summary>
    /// Parses the capabilities of a config-space image (at least the first 256 bytes). Following §4.1.4, the first
    /// usable capability of each type wins, capabilities naming a BAR above 5 or with a short <c>cap_len</c> are
    /// skipped, and unknown types are ignored.
    /// </summary>
    /// <exception cref="FormatException">A structure the driver needs is missing or malformed.</exception>
    public static VirtioPciLayout Parse(ReadOnlyMemory<byte> configSpace)
    {
        if (configSpace.Length < PciConfigSpace.ConventionalSize)
        {
            throw new FormatException($"config space image has {configSpace.Length} bytes, fewer than {PciConfigSpace.ConventionalSize}");
        }
        var bytes = configSpace;
        ushort status = BinaryPrimitives.ReadUInt16LittleEndian(bytes.Span[0x06..]);
        var caps = PciConfigSpace.WalkCapabilities((status & (1 << 4)) != 0, bytes.Span[0x34],
            o => BinaryPrimitives.ReadUInt16LittleEndian(bytes.Span[o..]));

        VirtioStructure? common = null, notify = null, isr = null, device = null;
        uint multiplier = 0;
        foreach (var cap in caps)
        {
            if (cap.Id != PciCapabilityId.VendorSpecific) { continue; }
            var s = bytes.Span[cap.Offset..];
            int capLen = s[VirtioPciCap.CapLength];
            if (capLen < VirtioPciCap.Size || cap.Offset + VirtioPciCap.Size > PciConfigSpace.ConventionalSize) { continue; }
            var type = (VirtioPciCapType)s[VirtioPciCap.CfgType];
            byte bar = s[VirtioPciCap.Bar];
            if (bar > VirtioPciCap.MaxBar) { continue; }
            var structure = new VirtioStructure(type, bar,
                BinaryPrimitives.ReadUInt32LittleEndian(s[VirtioPciCap.Offset..]),
                BinaryPrimitives.ReadUInt32LittleEndian(s[VirtioPciCap.Length..]), cap.Offset);
            switch (type)
            {
                case VirtioPciCapType.Common when common is null:
                    if (structure.Length >= MinCommonLength) { common = structure; }
                    break;
                case VirtioPciCapType.Notify when notify is null:
                    if (capLen >= VirtioPciCap.NotifyCapSize && cap.Offset + VirtioPciCap.NotifyCapSize <= PciConfigSpace.ConventionalSize)
                    {
                        notify = structure;
                        multiplier = BinaryPrimitives.ReadUInt32LittleEndian(s[VirtioPciCap.NotifyOffMultiplier..]);
                    }
                    break;
                case VirtioPciCapType.Isr when isr is null:
                    isr = structure;
                    break;
                case VirtioPciCapType.Device when device is null:
                    device = structure;
                    break;
            }
        }
        if (common is null) { throw new FormatException("no usable virtio common configuration capability: not a modern (virtio 1.x) device"); }
        if (notify is null) { throw new FormatException("no usable virtio notification capability"); }
        if (isr is null) { throw new FormatException("no virtio ISR capability"); }
        return new VirtioPciLayout(common.Value, notify.Value, multiplier, isr.Value, device);
    }

    /// <summary>Reads the first <paramref name="length"/> bytes of a device's config space, 32 bits at a time.</summary>
    public static byte[] ReadConfigImage(PciConfigSpace config, int length = PciConfigSpace.ConventionalSize)
    {
        ArgumentNullException.ThrowIfNull(config);
        var image = new byte[length];
        for (int o = 0; o < length; o += 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(o), config.Read32(o));
        }
        return image;
    }

    /// <summary>
    /// The doorbell's offset within the notify BAR for a queue whose <c>queue_notify_off</c> is
    /// <paramref name="queueNotifyOff"/>: cap.offset + queue_notify_off × notify_off_multiplier (§4.1.4.4).
    /// </summary>
    public ulong DoorbellOffset(ushort queueNotifyOff) => VirtioPciNotify.DoorbellOffset(Notify.Offset, queueNotifyOff, NotifyOffMultiplier);
}
