using CsCheck;
using Vfio.Cli.Tools.Net;

namespace Vfio.Cli.Tests;

public sealed class TestFramesTests
{
    [Fact]
    public void RoundTripsAndDetectsDamage()
    {
        Gen.Select(Gen.Int[TestFrames.MinSize, TestFrames.MaxSize], Gen.ULong).Sample((size, seq) =>
        {
            var frame = new byte[size];
            TestFrames.Write(frame, size, seq, TestFrames.Broadcast, [2, 0, 0, 0, 0, 1]);
            if (!TestFrames.TryRead(frame, out var read) || read != seq) { return false; }
            frame[^1] ^= 1;                                                   // corrupt the last byte
            bool corruptedRejected = size == TestFrames.MinSize || !TestFrames.TryRead(frame, out _);
            frame[^1] ^= 1;
            bool truncatedRejected = !TestFrames.TryRead(frame.AsSpan(0, size - 1), out _);
            return corruptedRejected && truncatedRejected;
        });
    }

    [Fact]
    public void OtherFramesAreNotTestFrames()
    {
        var arp = new byte[60];
        arp[12] = 0x08; arp[13] = 0x06;
        Assert.False(TestFrames.TryRead(arp, out _));
        Assert.False(TestFrames.TryRead(new byte[10], out _));
    }

    [Fact]
    public void Udp_frames_carry_a_valid_ipv4_header_and_the_flow_in_the_source_port()
    {
        var frame = new byte[64];
        TestFrames.WriteUdp(frame, 64, 7, TestFrames.Broadcast, [2, 0, 0, 0, 0, 1], flow: 5);
        Assert.Equal(0x0800, frame[12] << 8 | frame[13]);
        // RFC 1071: the one's complement sum over a header with its checksum in place is 0xFFFF.
        uint sum = 0;
        for (int i = 14; i < 34; i += 2) { sum += (uint)(frame[i] << 8 | frame[i + 1]); }
        while (sum > 0xFFFF) { sum = (sum & 0xFFFF) + (sum >> 16); }
        Assert.Equal(0xFFFFu, sum);
        Assert.Equal(50, frame[16] << 8 | frame[17]);      // IPv4 total length
        Assert.Equal(1029, frame[34] << 8 | frame[35]);    // source port 1024 + flow
        Assert.Equal(30, frame[38] << 8 | frame[39]);      // UDP length
        Assert.Equal(7, frame[42]);                        // the sequence starts the payload
        Assert.False(TestFrames.TryRead(frame, out _));    // not an 0x88B5 test frame
        Assert.Throws<ArgumentOutOfRangeException>(() => TestFrames.WriteUdp(frame, 40, 0, TestFrames.Broadcast, [2, 0, 0, 0, 0, 1], 0));
    }
}
