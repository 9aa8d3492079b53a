using CsCheck;
using Vfio.Devices;
using Vfio.User.Protocol;

namespace Vfio.User.Tests;

/// <summary>Wire layouts as pure functions: every field at its offset, round trips, short bodies refused.</summary>
public sealed class ProtocolTests
{
    [Fact]
    public void HeaderBytesAreLittleEndianAtTheirOffsets()
    {
        var b = new byte[16];
        new MessageHeader(0x0102, Command.RegionWrite, 0x0A0B0C0D, MessageHeader.NoReplyFlag | 1, 0x11223344).Write(b);
        Assert.Equal(new byte[] { 0x02, 0x01, 10, 0, 0x0D, 0x0C, 0x0B, 0x0A, 0x11, 0, 0, 0, 0x44, 0x33, 0x22, 0x11 }, b);
    }

    [Fact]
    public void HeaderRoundTrips() =>
        Gen.Select(Gen.UShort, Gen.UShort, Gen.UInt, Gen.UInt, Gen.UInt).Sample((id, cmd, size, flags, err) =>
        {
            var h = new MessageHeader(id, (Command)cmd, size, flags, err);
            var b = new byte[16];
            h.Write(b);
            Assert.Equal(h, MessageHeader.Read(b));
        });

    [Fact]
    public void HeaderFlagsDecode()
    {
        var e = MessageHeader.ForError(7, Command.DmaMap, Errno.EINVAL);
        Assert.True(e.IsReply);
        Assert.True(e.IsError);
        Assert.Equal((uint)Errno.EINVAL, e.ErrorNumber);
        Assert.Equal(16u, e.Size);
        var c = MessageHeader.ForCommand(8, Command.DeviceReset, 0, noReply: true);
        Assert.True(c.IsCommand);
        Assert.True(c.NoReply);
        Assert.False(c.IsError);
        Assert.Equal(0x10u, c.Flags);
        Assert.Equal(0x21u, e.Flags);
    }

    [Fact]
    public void BodiesRoundTrip()
    {
        Gen.Select(Gen.UInt[0, 3], Gen.ULong, Gen.ULong, Gen.ULong).Sample((f, o, a, s) =>
        {
            var m = new DmaMapRequest((DmaMapFlags)f, o, a, s);
            var b = new byte[DmaMapRequest.Length];
            m.Write(b);
            Assert.Equal(32u, BitConverter.ToUInt32(b));
            Assert.Equal(m, DmaMapRequest.Read(b));
        });
        Gen.Select(Gen.ULong, Gen.UInt, Gen.UInt).Sample((o, r, c) =>
        {
            var m = new RegionAccess(o, r, c);
            var b = new byte[16];
            m.Write(b);
            Assert.Equal(m, RegionAccess.Read(b, Command.RegionRead));
        });
        var ri = new RegionInfoMessage(32, RegionFlags.Read | RegionFlags.Mmap, 7, 0, 0x1000, 0x2000);
        var rb = new byte[32];
        ri.Write(rb);
        Assert.Equal(ri, RegionInfoMessage.Read(rb));
        var si = new SetIrqsRequest(SetIrqsRequest.DataEventFd | SetIrqsRequest.ActionTrigger, 1, 0, 1);
        var sb = new byte[20];
        si.Write(sb);
        Assert.Equal(0x24u, BitConverter.ToUInt32(sb, 4));
        Assert.Equal(si, SetIrqsRequest.Read(sb));
    }

    [Fact]
    public void ShortBodiesAreInvalidNotCrashes()
    {
        var e = Assert.Throws<VfioUserCommandException>(() => DmaMapRequest.Read(new byte[31]));
        Assert.Equal(Errno.EINVAL, e.ErrorNumber);
        Assert.Throws<VfioUserCommandException>(() => RegionAccess.Read(new byte[15], Command.RegionWrite));
        Assert.Throws<VfioUserCommandException>(() => SetIrqsRequest.Read([]));
        Assert.Throws<VfioUserCommandException>(() => VersionMessage.Read(new byte[3]));
    }

    [Fact]
    public void VersionCarriesJsonCapabilities()
    {
        var v = new VersionMessage(0, 1, new VersionCapabilities { MaxMessageFds = 8, MaxDataTransferSize = 65536 });
        var b = v.Encode();
        Assert.Equal(0, b[^1]);
        string json = System.Text.Encoding.UTF8.GetString(b, 4, b.Length - 5);
        Assert.Contains("\"capabilities\"", json);
        Assert.Contains("\"max_msg_fds\":8", json);
        Assert.Contains("\"max_data_xfer_size\":65536", json);
        Assert.Equal(v, VersionMessage.Read(b) with { Capabilities = v.Capabilities });
        Assert.Equal(v.Capabilities, VersionMessage.Read(b).Capabilities);
    }

    [Fact]
    public void VersionFromOtherImplementationsIsUnderstood()
    {
        // Members this library does not use (migration, twin_socket) are ignored; absent ones take defaults.
        var json = "{\"capabilities\":{\"max_msg_fds\":16,\"migration\":{\"pgsize\":4096},\"twin_socket\":{\"supported\":true}}}"u8;
        var b = new byte[4 + json.Length + 1];
        b[2] = 1;
        json.CopyTo(b.AsSpan(4));
        var v = VersionMessage.Read(b);
        Assert.Equal((ushort)1, v.Minor);
        Assert.Equal(16, v.Capabilities.MaxMessageFds);
        Assert.Equal(VersionCapabilities.DefaultMaxDataTransferSize, v.Capabilities.MaxDataTransferSize);
        Assert.Equal(1, VersionMessage.Read([0, 0, 1, 0]).Capabilities.MaxMessageFds);
    }

    [Theory]
    [InlineData("{")]
    [InlineData("[1,2]")]
    [InlineData("{\"capabilities\":{\"max_msg_fds\":\"many\"}}")]
    [InlineData("{\"capabilities\":{\"max_data_xfer_size\":0}}")]
    [InlineData("{\"capabilities\":{\"max_msg_fds\":-1}}")]
    public void MalformedVersionDataIsInvalid(string json)
    {
        var j = System.Text.Encoding.UTF8.GetBytes(json);
        var b = new byte[4 + j.Length];
        j.CopyTo(b, 4);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioUserCommandException>(() => VersionMessage.Read(b)).ErrorNumber);
    }
}

public sealed class MessageSocketLimitTests
{
    [Fact]
    public void MoreDescriptorsThanOneMessageCarriesIsAnIOException()
    {
        using var a = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        using var socket = new Vfio.User.Transport.MessageSocket(a, 1 << 20, 16);
        var fds = Enumerable.Range(0, Vfio.Linux.UnixFdSocket.MaxFdsPerMessage + 1).Select(_ => new Vfio.Linux.EventFd()).ToArray();
        try
        {
            var handles = fds.Select(f => f.Handle).ToArray();
            var e = Assert.Throws<IOException>(() => socket.Send(MessageHeader.ForCommand(1, Command.DeviceSetIrqs, 0), [], handles));
            Assert.Contains("at most 253", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var f in fds) { f.Dispose(); }
        }
    }
}
