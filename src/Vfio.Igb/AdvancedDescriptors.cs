using System.Runtime.CompilerServices;

namespace Vfio.Igb;

/// <summary>
/// Per-packet receive flags decoded from an advanced receive descriptor's write-back (82576 datasheet §7.1.5.2):
/// what the device checked (IP checksum, L4 checksum) and what it found wrong.
/// </summary>
[Flags]
public enum IgbRxFlags : ushort
{
    /// <summary>Nothing checked or reported.</summary>
    None = 0,
    /// <summary>IPCS: the device checked the IPv4 header checksum.</summary>
    IpChecksumChecked = 1 << 0,
    /// <summary>L4I/TCPCS: the device checked the TCP or UDP checksum.</summary>
    L4ChecksumChecked = 1 << 1,
    /// <summary>UDPCS: the L4 checksum checked was a UDP one.</summary>
    Udp = 1 << 2,
    /// <summary>IPE: the IPv4 header checksum is wrong.</summary>
    IpChecksumError = 1 << 3,
    /// <summary>L4E (TCPE): the TCP or UDP checksum is wrong.</summary>
    L4ChecksumError = 1 << 4,
    /// <summary>VP: a VLAN tag was stripped (the tag is in <see cref="IgbRxMetadata.VlanTag"/>).</summary>
    VlanStripped = 1 << 5,
    /// <summary>The RSS hash field is valid (RSS on and the packet of a hashed type).</summary>
    RssHashValid = 1 << 6,
}

/// <summary>What the device reported about one received packet besides its data.</summary>
/// <param name="Flags">Checksum and VLAN flags.</param>
/// <param name="RssHash">The Toeplitz hash the device computed (valid with <see cref="IgbRxFlags.RssHashValid"/>).</param>
/// <param name="RssType">The RSS type (§7.1.5.2: 0 none, 1 TCP/IPv4, 2 IPv4, 3 TCP/IPv6, 5 IPv6, 7 UDP/IPv4, 8 UDP/IPv6).</param>
/// <param name="VlanTag">The stripped VLAN tag, when <see cref="IgbRxFlags.VlanStripped"/>.</param>
public readonly record struct IgbRxMetadata(IgbRxFlags Flags, uint RssHash, byte RssType, ushort VlanTag)
{
    /// <summary>True when the device checked a checksum and found it wrong.</summary>
    public bool HasChecksumError => (Flags & (IgbRxFlags.IpChecksumError | IgbRxFlags.L4ChecksumError)) != 0;
}

/// <summary>Checksums the device inserts on transmit (§7.2.5 "Transmit Offloads").</summary>
[Flags]
public enum IgbTxChecksum : byte
{
    /// <summary>No offload: frames go out as given.</summary>
    None = 0,
    /// <summary>IXSM: insert the IPv4 header checksum.</summary>
    Ipv4 = 1 << 0,
    /// <summary>TXSM with L4T TCP: insert the TCP checksum.</summary>
    Tcp = 1 << 1,
    /// <summary>TXSM with L4T UDP: insert the UDP checksum.</summary>
    Udp = 1 << 2,
}

/// <summary>
/// Transmit checksum offload for a burst: which checksums to insert and where the headers are (the context the
/// driver writes in an advanced context descriptor, §7.2.3.2.3). The frames of one burst share it.
/// </summary>
/// <param name="Checksums">Checksums to insert.</param>
/// <param name="MacHeaderLength">Bytes before the IP header (MACLEN, 14 for untagged Ethernet II).</param>
/// <param name="IpHeaderLength">Bytes of the IP header (IPLEN, 20 for IPv4 without options).</param>
/// <param name="Ipv6">The L3 header is IPv6 (TUCMD.IPV4 clear).</param>
public readonly record struct IgbTxOffload(IgbTxChecksum Checksums, int MacHeaderLength = 14, int IpHeaderLength = 20, bool Ipv6 = false)
{
    /// <summary>No offload.</summary>
    public static IgbTxOffload None => default;
}

/// <summary>
/// The advanced descriptor formats (§7.1.5 receive, §7.2.3 transmit) as pure encode/decode functions on the two
/// little-endian quadwords of a 16-byte descriptor. The driver keeps no state in descriptors beyond what they say.
/// </summary>
internal static class AdvancedDescriptor
{
    public const int Size = 16;

    // Receive write-back, high quadword (§7.1.5.2): extended status 19:0, extended errors 31:20, PKT_LEN 47:32, VLAN 63:48.
    public const ulong RxStatusDone = 1UL << 0;          // DD
    public const ulong RxStatusEndOfPacket = 1UL << 1;   // EOP
    public const ulong RxStatusVlan = 1UL << 3;          // VP
    public const ulong RxStatusUdpChecksum = 1UL << 4;   // UDPCS
    public const ulong RxStatusL4Checksum = 1UL << 5;    // L4I (TCPCS)
    public const ulong RxStatusIpChecksum = 1UL << 6;    // IPCS
    public const ulong RxErrorHeaderBufferOverflow = 1UL << 23;  // HBO
    public const ulong RxErrorL4Checksum = 1UL << 29;    // L4E (TCPE)
    public const ulong RxErrorIpChecksum = 1UL << 30;    // IPE
    public const ulong RxErrorReceive = 1UL << 31;       // RXE: CRC, symbol or other frame error

    /// <summary>The read format (§7.1.5.1): packet buffer address, header buffer address 0 (one-buffer mode), DD clear.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (ulong Low, ulong High) EncodeRxRead(ulong packetAddress) => (packetAddress, 0);

    /// <summary>The fields of a receive write-back.</summary>
    public readonly record struct RxWriteBack(bool Done, bool EndOfPacket, int Length, ulong Status, IgbRxMetadata Metadata, bool FrameError);

    /// <summary>Decodes a receive write-back (§7.1.5.2). <paramref name="rssEnabled"/>: dword 1 is the RSS hash.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static RxWriteBack DecodeRxWriteBack(ulong low, ulong high, bool rssEnabled)
    {
        bool done = (high & RxStatusDone) != 0;
        int length = (int)((high >> 32) & 0xFFFF);
        var flags = IgbRxFlags.None;
        if ((high & RxStatusIpChecksum) != 0) { flags |= IgbRxFlags.IpChecksumChecked; }
        if ((high & RxStatusL4Checksum) != 0) { flags |= IgbRxFlags.L4ChecksumChecked; }
        if ((high & RxStatusUdpChecksum) != 0) { flags |= IgbRxFlags.Udp; }
        if ((high & RxErrorIpChecksum) != 0) { flags |= IgbRxFlags.IpChecksumError; }
        if ((high & RxErrorL4Checksum) != 0) { flags |= IgbRxFlags.L4ChecksumError; }
        if ((high & RxStatusVlan) != 0) { flags |= IgbRxFlags.VlanStripped; }
        byte rssType = (byte)(low & 0xF);
        if (rssEnabled && rssType != 0) { flags |= IgbRxFlags.RssHashValid; }
        var metadata = new IgbRxMetadata(flags, rssEnabled ? (uint)(low >> 32) : 0, rssType, (ushort)(high >> 48));
        return new RxWriteBack(done, (high & RxStatusEndOfPacket) != 0, length, high & 0xFFFFF, metadata, (high & RxErrorReceive) != 0);
    }

    // Transmit data descriptor (§7.2.3.2.4): cmd_type_len in dword 2, olinfo_status in dword 3.
    public const ulong TxDtypData = 3UL << 20;
    public const ulong TxDtypContext = 2UL << 20;
    public const ulong TxCmdEndOfPacket = 1UL << 24;     // EOP
    public const ulong TxCmdInsertFcs = 1UL << 25;       // IFCS
    public const ulong TxCmdReportStatus = 1UL << 27;    // RS: write DD back when done
    public const ulong TxCmdExtended = 1UL << 29;        // DEXT: advanced format
    public const int TxPopulateShift = 32 + 8;           // POPTS, dword 3 bits 13:8
    public const ulong TxPopulateIpChecksum = 1UL << TxPopulateShift;        // IXSM
    public const ulong TxPopulateL4Checksum = 1UL << (TxPopulateShift + 1);  // TXSM
    public const int TxPayloadLengthShift = 32 + 14;     // PAYLEN, dword 3 bits 31:14
    public const ulong TxStatusDone = 1UL << 32;         // write-back STA.DD, dword 3 bit 0
    public const int MaxTxLength = 0xFFFF;

    /// <summary>An advanced data descriptor for a whole frame in one buffer (§7.2.3.2.4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (ulong Low, ulong High) EncodeTxData(ulong bufferAddress, int length, IgbTxChecksum checksums)
    {
        ulong high = (uint)length | TxDtypData | TxCmdEndOfPacket | TxCmdInsertFcs | TxCmdReportStatus | TxCmdExtended
            | ((ulong)(uint)length << TxPayloadLengthShift);
        if ((checksums & IgbTxChecksum.Ipv4) != 0) { high |= TxPopulateIpChecksum; }
        if ((checksums & (IgbTxChecksum.Tcp | IgbTxChecksum.Udp)) != 0) { high |= TxPopulateL4Checksum; }
        return (bufferAddress, high);
    }

    /// <summary>
    /// An advanced context descriptor (§7.2.3.2.3) for context slot 0: MACLEN and IPLEN in dword 0, TUCMD (IPV4,
    /// L4T) in dword 2. RS is set so the device writes DD back and the slot is reclaimed like the others.
    /// </summary>
    public static (ulong Low, ulong High) EncodeTxContext(in IgbTxOffload offload)
    {
        ulong low = ((uint)offload.IpHeaderLength & 0x1FF) | (((uint)offload.MacHeaderLength & 0x7F) << 9);
        ulong tucmd = 0;
        if (!offload.Ipv6) { tucmd |= 1UL << 10; }                         // TUCMD.IPV4
        if ((offload.Checksums & IgbTxChecksum.Tcp) != 0) { tucmd |= 1UL << 11; } // L4T 01b TCP; 00b UDP
        ulong high = tucmd | TxDtypContext | TxCmdExtended | TxCmdReportStatus;
        return (low, high);
    }

    /// <summary>True when a transmit descriptor's write-back says the device is done with it.</summary>
    public static bool TxDone(ulong high) => (high & TxStatusDone) != 0;
}

/// <summary>Index arithmetic of a descriptor ring whose head chases its tail (§7.1.6, §7.2.2): pure functions.</summary>
internal static class RingMath
{
    /// <summary>The slot after <paramref name="index"/>.</summary>
    public static int Next(int index, int size) => index + 1 == size ? 0 : index + 1;

    /// <summary>Slots from <paramref name="from"/> up to (not including) <paramref name="to"/>, going forward.</summary>
    public static int Distance(int from, int to, int size) => to >= from ? to - from : to + size - from;

    /// <summary>
    /// A head value the device reported lies in the ring and within the slots the driver handed over, which run
    /// from <paramref name="clean"/> (the oldest slot the driver has not taken back) to <paramref name="tail"/>.
    /// </summary>
    public static bool HeadValid(uint head, int clean, int tail, int size) =>
        head < (uint)size && Distance(clean, (int)head, size) <= Distance(clean, tail, size);
}
