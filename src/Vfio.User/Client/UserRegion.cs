using Vfio.Devices;
using Vfio.Linux;
using Vfio.User.Protocol;

namespace Vfio.User.Client;

/// <summary>
/// A region of a vfio-user device. Where the server shared the region (or its sparse areas) by descriptor it is
/// mmap'd (<see cref="MappedRegion"/>); otherwise each typed access is one REGION_READ or REGION_WRITE message of
/// exactly that width, so registers with side effects see one access of the right size. Bulk copies are split at
/// the largest transfer the server accepts.
/// </summary>
internal sealed class UserRegion(VfioUserDevice device, RegionInfo info, SafeFdHandle? fd)
    : MappedRegion(info, null, fd, "vfio-user region")
{
    protected override void ReadUnmapped(ulong offset, Span<byte> destination)
    {
        for (int done = 0; done < destination.Length;)
        {
            int n = Math.Min(destination.Length - done, device.MaxTransfer);
            Transfer(offset + (ulong)done, destination.Slice(done, n));
            done += n;
        }
    }

    protected override void WriteUnmapped(ulong offset, ReadOnlySpan<byte> source)
    {
        for (int done = 0; done < source.Length;)
        {
            int n = Math.Min(source.Length - done, device.MaxTransfer);
            Send(offset + (ulong)done, source.Slice(done, n));
            done += n;
        }
    }

    private void Transfer(ulong offset, Span<byte> destination)
    {
        Span<byte> body = stackalloc byte[RegionAccess.Length];
        var access = new RegionAccess(offset, (uint)Info.Index, (uint)destination.Length);
        access.Write(body);
        using var reply = device.Request(Command.RegionRead, body);
        if (reply.Body.Length != RegionAccess.Length + destination.Length || RegionAccess.Read(reply.Body, Command.RegionRead) != access)
        {
            throw new VfioException($"vfio-user REGION_READ of region {Info.Index} at 0x{offset:x}: the reply does not match the request", device.Address);
        }
        reply.Body.AsSpan(RegionAccess.Length).CopyTo(destination);
    }

    private void Send(ulong offset, ReadOnlySpan<byte> data)
    {
        var body = new byte[RegionAccess.Length + data.Length];
        new RegionAccess(offset, (uint)Info.Index, (uint)data.Length).Write(body);
        data.CopyTo(body.AsSpan(RegionAccess.Length));
        using var _ = device.Request(Command.RegionWrite, body);
    }
}
