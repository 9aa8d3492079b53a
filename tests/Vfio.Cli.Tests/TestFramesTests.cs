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
}
