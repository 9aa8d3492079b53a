namespace Vfio.Igb;

/// <summary>
/// Register offsets in BAR0 and their bits, from the Intel 82576EB GbE Controller Datasheet (rev 2.x) chapter 8
/// "Programming Interface". Queue registers use the 82576 layout of §8.10 and §8.12 (queue n at base + 0x40 * n);
/// the 82575-compatible aliases below 0x4000 are not used.
/// </summary>
internal static class IgbReg
{
    // §8.2 General registers.
    public const ulong Ctrl = 0x0000;      // §8.2.1 Device Control
    public const ulong Status = 0x0008;    // §8.2.2 Device Status
    public const ulong Eecd = 0x0010;      // §8.2.3 EEPROM/Flash Control
    public const ulong Eerd = 0x0014;      // §8.2.4 EEPROM Read
    public const ulong CtrlExt = 0x0018;   // §8.2.5 Extended Device Control
    public const ulong Mdic = 0x0020;      // §8.2.7 MDI Control

    // §8.8 Interrupt registers.
    public const ulong Icr = 0x00C0;       // §8.8.1 Interrupt Cause Read (clear on read)
    public const ulong Ims = 0x00D0;       // Interrupt Mask Set/Read (§8.8)
    public const ulong Imc = 0x00D8;       // §8.8.6 Interrupt Mask Clear
    public const ulong Gpie = 0x1514;      // General Purpose Interrupt Enable (§8.8)
    public const ulong Eims = 0x1524;      // Extended Interrupt Mask Set/Read (§8.8)
    public const ulong Eimc = 0x1528;      // §8.8.13 Extended Interrupt Mask Clear
    public const ulong Eiac = 0x152C;      // Extended Interrupt Auto Clear (§8.8)
    public const ulong Eiam = 0x1530;      // Extended Interrupt Auto Mask (§8.8)
    public const ulong Eicr = 0x1580;      // §8.8.10 Extended Interrupt Cause
    public const ulong IvarMisc = 0x1740;  // Interrupt Vector Allocation for other causes (§8.8)

    /// <summary>Extended Interrupt Throttle of MSI-X vector <paramref name="vector"/> (§8.8; EITR0 at 0x1680).</summary>
    public static ulong Eitr(int vector) => 0x1680 + 4UL * (uint)vector;

    /// <summary>Interrupt Vector Allocation register <paramref name="n"/> (§8.8, §7.3.2; IVAR0 at 0x1700, 8 registers).</summary>
    public static ulong Ivar(int n) => 0x1700 + 4UL * (uint)n;

    // §8.10 Receive registers.
    public const ulong Rctl = 0x0100;      // §8.10.1 Receive Control
    public const ulong Rxcsum = 0x5000;    // §8.10.17 Receive Checksum Control
    public const ulong Mta = 0x5200;       // §8.10.15 Multicast Table Array, 128 dwords
    public const int MtaEntries = 128;
    public const ulong Ral0 = 0x5400;      // §8.10.13 Receive Address Low (entry n at + 8n)
    public const ulong Rah0 = 0x5404;      // §8.10.14 Receive Address High
    public const int ReceiveAddresses = 16;
    public const ulong Mrqc = 0x5818;      // §8.10.22 Multiple Receive Queues Command
    public const ulong Reta = 0x5C00;      // §8.10.23 Redirection Table, 32 dwords of four 8-bit entries
    public const ulong Rssrk = 0x5C80;     // §8.10.24 RSS Random Key, 10 dwords

    public static ulong Ral(int n) => Ral0 + 8UL * (uint)n;
    public static ulong Rah(int n) => Rah0 + 8UL * (uint)n;

    // §8.10.4-§8.10.11, queue n at 0xC000 + 0x40 n.
    public static ulong Rdbal(int q) => 0xC000 + 0x40UL * (uint)q;
    public static ulong Rdbah(int q) => 0xC004 + 0x40UL * (uint)q;
    public static ulong Rdlen(int q) => 0xC008 + 0x40UL * (uint)q;
    public static ulong Srrctl(int q) => 0xC00C + 0x40UL * (uint)q;
    public static ulong Rdh(int q) => 0xC010 + 0x40UL * (uint)q;
    public static ulong Rdt(int q) => 0xC018 + 0x40UL * (uint)q;
    public static ulong Rxdctl(int q) => 0xC028 + 0x40UL * (uint)q;

    // §8.12 Transmit registers; queue n at 0xE000 + 0x40 n (§8.12.10-§8.12.16).
    public const ulong Tctl = 0x0400;      // §8.12.1 Transmit Control
    public const ulong Tipg = 0x0410;      // §8.12.3 Transmit IPG
    public static ulong Tdbal(int q) => 0xE000 + 0x40UL * (uint)q;
    public static ulong Tdbah(int q) => 0xE004 + 0x40UL * (uint)q;
    public static ulong Tdlen(int q) => 0xE008 + 0x40UL * (uint)q;
    public static ulong Tdh(int q) => 0xE010 + 0x40UL * (uint)q;
    public static ulong Tdt(int q) => 0xE018 + 0x40UL * (uint)q;
    public static ulong Txdctl(int q) => 0xE028 + 0x40UL * (uint)q;

    /// <summary>The most receive and transmit queues of the 82576 (§1.3, §7.1.2); QEMU's igb models all 16.</summary>
    public const int MaxQueues = 16;
}

/// <summary>CTRL bits (§8.2.1).</summary>
internal static class IgbCtrl
{
    public const uint FullDuplex = 1u << 0;
    public const uint GioMasterDisable = 1u << 2;
    public const uint SetLinkUp = 1u << 6;
    public const uint Reset = 1u << 26;
    public const uint PhyReset = 1u << 31;
}

/// <summary>STATUS bits (§8.2.2).</summary>
internal static class IgbStatus
{
    public const uint FullDuplex = 1u << 0;
    public const uint LinkUp = 1u << 1;
    public const int SpeedShift = 6;       // bits 7:6: 00 10 Mb/s, 01 100 Mb/s, 1x 1000 Mb/s
    public const uint SpeedMask = 3u << SpeedShift;
    public const uint GioMasterEnable = 1u << 19;
}

/// <summary>EERD bits (§8.2.4): start, done, the word address at bit 2, the data in the high half.</summary>
internal static class IgbEerd
{
    public const uint Start = 1u << 0;
    public const uint Done = 1u << 1;
    public const int AddressShift = 2;
    public const int DataShift = 16;
}

/// <summary>MDIC fields (§8.2.7) and the PHY registers the driver touches (IEEE 802.3 clause 22, §8.24).</summary>
internal static class IgbMdic
{
    public const int RegisterShift = 16;
    public const int PhyShift = 21;
    public const uint OpWrite = 1u << 26;
    public const uint OpRead = 2u << 26;
    public const uint Ready = 1u << 28;
    public const uint Error = 1u << 30;
    /// <summary>The internal PHY answers at MDIO address 1 (§8.2.7; QEMU rejects any other).</summary>
    public const int InternalPhy = 1;
    /// <summary>PHY Control (BMCR), clause 22 register 0.</summary>
    public const int PhyControl = 0;
    public const ushort BmcrSpeed1000 = 0x0040;
    public const ushort BmcrFullDuplex = 0x0100;
    public const ushort BmcrRestartAutoNeg = 0x0200;
    public const ushort BmcrAutoNegEnable = 0x1000;
}

/// <summary>RCTL bits (§8.10.1).</summary>
internal static class IgbRctl
{
    public const uint Enable = 1u << 1;
    public const uint StoreBadPackets = 1u << 2;
    public const uint UnicastPromiscuous = 1u << 3;
    public const uint MulticastPromiscuous = 1u << 4;
    public const uint LongPacket = 1u << 5;
    public const uint BroadcastAccept = 1u << 15;
    public const uint StripCrc = 1u << 26;
}

/// <summary>SRRCTL fields (§8.10.2).</summary>
internal static class IgbSrrctl
{
    /// <summary>BSIZEPACKET, bits 6:0, in 1 KB units.</summary>
    public const int PacketSizeUnit = 1024;
    /// <summary>DESCTYPE (bits 27:25) 001b: advanced descriptor, one buffer.</summary>
    public const uint DescTypeAdvancedOneBuffer = 1u << 25;
    /// <summary>Drop packets for this queue when it has no descriptors instead of stalling the others.</summary>
    public const uint DropEnable = 1u << 31;
}

/// <summary>RXDCTL/TXDCTL fields (§8.10.10, §8.12.13).</summary>
internal static class IgbQueueControl
{
    public const uint Enable = 1u << 25;
    public const int PrefetchShift = 0;
    public const int HostShift = 8;
    public const int WriteBackShift = 16;
}

/// <summary>TCTL bits (§8.12.1).</summary>
internal static class IgbTctl
{
    public const uint Enable = 1u << 1;
    public const uint PadShortPackets = 1u << 3;
    public const int CollisionThresholdShift = 4;
    public const int CollisionDistanceShift = 12;
}

/// <summary>RXCSUM bits (§8.10.17).</summary>
internal static class IgbRxcsum
{
    public const uint IpOffload = 1u << 8;
    public const uint TcpUdpOffload = 1u << 9;
    /// <summary>Packet checksum disable: the descriptor's dword 1 carries the RSS hash instead (needed for RSS).</summary>
    public const uint PacketChecksumDisable = 1u << 13;
}

/// <summary>MRQC fields (§8.10.22).</summary>
internal static class IgbMrqc
{
    /// <summary>Multiple receive queues enable (bits 2:0) 010b: RSS only, no VMDq.</summary>
    public const uint EnableRss = 0x2;
    public const uint HashTcpIpv4 = 1u << 16;
    public const uint HashIpv4 = 1u << 17;
    public const uint HashTcpIpv6Ex = 1u << 18;
    public const uint HashIpv6 = 1u << 20;
    public const uint HashTcpIpv6 = 1u << 21;
    public const uint HashUdpIpv4 = 1u << 22;
    public const uint HashUdpIpv6 = 1u << 23;
    public const uint AllHashes = HashTcpIpv4 | HashIpv4 | HashTcpIpv6Ex | HashIpv6 | HashTcpIpv6 | HashUdpIpv4 | HashUdpIpv6;
}

/// <summary>RAH bits (§8.10.14).</summary>
internal static class IgbRah
{
    public const uint AddressValid = 1u << 31;
}

/// <summary>ICR/IMS cause bits (§8.8.1) the driver enables.</summary>
internal static class IgbIcr
{
    /// <summary>LSC: the link status changed (STATUS.LU, speed or duplex).</summary>
    public const uint LinkStatusChange = 1u << 2;
}

/// <summary>GPIE bits (§8.8, §7.3.2 "MSI-X mode").</summary>
internal static class IgbGpie
{
    /// <summary>NSICR: every ICR read clears ICR, whatever IMS holds.</summary>
    public const uint NonSelectiveClearOnRead = 1u << 0;
    /// <summary>Multiple_MSIX: causes go to vectors through IVAR, and EICR has one bit per vector.</summary>
    public const uint MultipleMsix = 1u << 4;
    /// <summary>EIAME: sending a vector's message also clears its EIMS bits named in EIAM (auto-mask).</summary>
    public const uint AutoMaskEnable = 1u << 30;
    /// <summary>PBA_support: the MSI-X pending bit array reflects EICR (set with Multiple_MSIX).</summary>
    public const uint PbaSupport = 1u << 31;
}

/// <summary>
/// IVAR layout on the 82576 (§7.3.2, §8.8): IVAR n holds four 8-bit entries, RX queue n (bits 7:0), TX queue n
/// (15:8), RX queue n + 8 (23:16), TX queue n + 8 (31:24); each entry is a vector number with bit 7 valid.
/// IVAR_MISC bits 15:8 allocate the vector of the "other" causes (ICR: link status change and the rest).
/// </summary>
internal static class IgbIvar
{
    public const uint Valid = 0x80;
    public const int MiscOtherShift = 8;

    /// <summary>The IVAR register and bit shift of queue <paramref name="queue"/>'s receive or transmit entry.</summary>
    public static (int Register, int Shift) Entry(int queue, bool receive) =>
        (queue % 8, (queue < 8 ? 0 : 16) + (receive ? 0 : 8));
}

/// <summary>EITR fields (§8.8): the minimum interval between interrupts of one vector, bits 14:2 in microseconds.</summary>
internal static class IgbEitr
{
    public const int IntervalShift = 2;
    public const int MaxIntervalMicroseconds = 0x1FFF;
}
