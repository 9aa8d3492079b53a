namespace Vfio.Igb.Tests;

/// <summary>Descriptor encoding and decoding (82576 datasheet §7.1.5, §7.2.3) and ring index arithmetic, as pure functions.</summary>
public sealed class DescriptorTests
{
    [Fact]
    public void Receive_read_format_carries_the_buffer_address_and_no_status()
    {
        var (low, high) = AdvancedDescriptor.EncodeRxRead(0x1234_5678_9000);
        Assert.Equal(0x1234_5678_9000UL, low);
        Assert.Equal(0UL, high);
    }

    [Fact]
    public void Receive_write_back_decodes_length_status_errors_and_rss()
    {
        ulong high = AdvancedDescriptor.RxStatusDone | AdvancedDescriptor.RxStatusEndOfPacket | AdvancedDescriptor.RxStatusIpChecksum
            | AdvancedDescriptor.RxStatusL4Checksum | AdvancedDescriptor.RxStatusUdpChecksum | AdvancedDescriptor.RxErrorL4Checksum
            | (60UL << 32) | (0x0123UL << 48);
        ulong low = 7 | (0xdeadbeefUL << 32);
        var wb = AdvancedDescriptor.DecodeRxWriteBack(low, high, rssEnabled: true);
        Assert.True(wb.Done);
        Assert.True(wb.EndOfPacket);
        Assert.False(wb.FrameError);
        Assert.Equal(60, wb.Length);
        Assert.Equal(0xdeadbeefu, wb.Metadata.RssHash);
        Assert.Equal(7, wb.Metadata.RssType);
        Assert.Equal(0x0123, wb.Metadata.VlanTag);
        Assert.Equal(IgbRxFlags.IpChecksumChecked | IgbRxFlags.L4ChecksumChecked | IgbRxFlags.Udp | IgbRxFlags.L4ChecksumError | IgbRxFlags.RssHashValid, wb.Metadata.Flags);
        Assert.True(wb.Metadata.HasChecksumError);

        // Without PCSD dword 1 is the IP ID / checksum, not a hash: no hash reported.
        var plain = AdvancedDescriptor.DecodeRxWriteBack(low, high | AdvancedDescriptor.RxErrorIpChecksum | AdvancedDescriptor.RxErrorReceive, rssEnabled: false);
        Assert.Equal(0u, plain.Metadata.RssHash);
        Assert.Equal(IgbRxFlags.None, plain.Metadata.Flags & IgbRxFlags.RssHashValid);
        Assert.True((plain.Metadata.Flags & IgbRxFlags.IpChecksumError) != 0);
        Assert.True(plain.FrameError);
    }

    [Fact]
    public void Transmit_data_descriptor_is_advanced_one_buffer_with_status_requested()
    {
        var (low, high) = AdvancedDescriptor.EncodeTxData(0xABCD_0000, 1514, IgbTxChecksum.None);
        Assert.Equal(0xABCD_0000UL, low);
        Assert.Equal(1514UL, high & 0xFFFF);                                       // DTALEN
        Assert.Equal(3UL, (high >> 20) & 0xF);                                     // DTYP data
        Assert.Equal(0x01UL | 0x02 | 0x08 | 0x20, (high >> 24) & 0xFF & 0x2B);     // EOP IFCS RS DEXT
        Assert.Equal(1514UL, high >> 46);                                          // PAYLEN
        Assert.Equal(0UL, (high >> 40) & 3);                                       // no POPTS
        Assert.False(AdvancedDescriptor.TxDone(high));

        var (_, offloaded) = AdvancedDescriptor.EncodeTxData(0, 60, IgbTxChecksum.Ipv4 | IgbTxChecksum.Udp);
        Assert.Equal(3UL, (offloaded >> 40) & 3);                                  // IXSM and TXSM
    }

    [Fact]
    public void Transmit_context_descriptor_carries_header_lengths_and_l4_type()
    {
        var (low, high) = AdvancedDescriptor.EncodeTxContext(new IgbTxOffload(IgbTxChecksum.Ipv4 | IgbTxChecksum.Tcp, 14, 20));
        Assert.Equal(20UL, low & 0x1FF);                 // IPLEN
        Assert.Equal(14UL, (low >> 9) & 0x7F);           // MACLEN
        Assert.Equal(2UL, (high >> 20) & 0xF);           // DTYP context
        Assert.NotEqual(0UL, high & (1UL << 10));        // TUCMD.IPV4
        Assert.Equal(1UL, (high >> 11) & 3);             // L4T TCP
        Assert.NotEqual(0UL, high & AdvancedDescriptor.TxCmdExtended);

        var (_, udp6) = AdvancedDescriptor.EncodeTxContext(new IgbTxOffload(IgbTxChecksum.Udp, 14, 40, Ipv6: true));
        Assert.Equal(0UL, udp6 & (1UL << 10));
        Assert.Equal(0UL, (udp6 >> 11) & 3);             // L4T UDP
    }

    [Theory]
    [InlineData(0, 0, 8, 0)]
    [InlineData(2, 5, 8, 3)]
    [InlineData(6, 1, 8, 3)]
    [InlineData(7, 6, 8, 7)]
    public void Distance_counts_forward_around_the_ring(int from, int to, int size, int expected) =>
        Assert.Equal(expected, RingMath.Distance(from, to, size));

    [Fact]
    public void Next_wraps_and_heads_must_lie_among_the_slots_handed_over()
    {
        Assert.Equal(1, RingMath.Next(0, 8));
        Assert.Equal(0, RingMath.Next(7, 8));
        // Slots 6, 7, 0, 1 handed over (clean 6, tail 2): heads 6..2 are fine, 3..5 are not, 8+ is outside.
        foreach (uint ok in new uint[] { 6, 7, 0, 1, 2 }) { Assert.True(RingMath.HeadValid(ok, 6, 2, 8), $"head {ok}"); }
        foreach (uint bad in new uint[] { 3, 4, 5, 8, 0xFFFF }) { Assert.False(RingMath.HeadValid(bad, 6, 2, 8), $"head {bad}"); }
    }
}
