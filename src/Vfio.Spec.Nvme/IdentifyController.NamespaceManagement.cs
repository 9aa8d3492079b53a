using System.Buffers.Binary;

namespace Vfio.Spec.Nvme;

/// <summary>Optional admin commands the controller supports (OACS, Identify Controller bytes 257:256, NVMe 1.4 Figure 247; bit 10 NVMe 2.0).</summary>
[Flags]
public enum OptionalAdminCommands : ushort
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>Security Send and Security Receive.</summary>
    Security = 1 << 0,
    /// <summary>Format NVM.</summary>
    FormatNvm = 1 << 1,
    /// <summary>Firmware Commit and Firmware Image Download.</summary>
    Firmware = 1 << 2,
    /// <summary>Namespace Management and Namespace Attachment.</summary>
    NamespaceManagement = 1 << 3,
    /// <summary>Device Self-test.</summary>
    DeviceSelfTest = 1 << 4,
    /// <summary>Directives.</summary>
    Directives = 1 << 5,
    /// <summary>NVMe-MI Send and NVMe-MI Receive.</summary>
    NvmeMi = 1 << 6,
    /// <summary>Virtualization Management.</summary>
    VirtualizationManagement = 1 << 7,
    /// <summary>Doorbell Buffer Config.</summary>
    DoorbellBufferConfig = 1 << 8,
    /// <summary>Get LBA Status.</summary>
    GetLbaStatus = 1 << 9,
    /// <summary>Command and Feature Lockdown (NVMe 2.0).</summary>
    Lockdown = 1 << 10,
}

/// <summary>The namespace management fields of Identify Controller (NVMe 1.4 §5.15.2.2, Figure 247), read from <see cref="Raw"/>.</summary>
public sealed partial record IdentifyController
{
    /// <summary>OACS (bytes 257:256).</summary>
    public OptionalAdminCommands OptionalAdminCommands =>
        Raw.Length >= 258 ? (OptionalAdminCommands)BinaryPrimitives.ReadUInt16LittleEndian(Raw.Span[256..]) : OptionalAdminCommands.None;

    /// <summary>TNVMCAP (bytes 295:280): total NVM capacity in bytes.</summary>
    public UInt128 TotalNvmCapacity => Raw.Length >= 296 ? BinaryPrimitives.ReadUInt128LittleEndian(Raw.Span[280..]) : UInt128.Zero;

    /// <summary>UNVMCAP (bytes 311:296): NVM capacity not allocated to any namespace, in bytes.</summary>
    public UInt128 UnallocatedNvmCapacity => Raw.Length >= 312 ? BinaryPrimitives.ReadUInt128LittleEndian(Raw.Span[296..]) : UInt128.Zero;

    /// <summary>
    /// FNA (byte 524): Format NVM attributes. Bit 0: a format applies to every namespace; bit 1: a secure erase applies to
    /// every namespace; bit 2: cryptographic erase is supported.
    /// </summary>
    public byte FormatNvmAttributes => Raw.Length > 524 ? Raw.Span[524] : (byte)0;
}
