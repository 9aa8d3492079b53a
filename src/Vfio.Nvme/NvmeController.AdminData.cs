using Vfio.Dma;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>Which way the data of an admin command moves.</summary>
public enum NvmeDataDirection
{
    /// <summary>No data (PRP1 and PRP2 are left 0).</summary>
    None,

    /// <summary>The controller writes the buffer (Identify, Get Log Page, Get Features with data).</summary>
    FromDevice,

    /// <summary>The controller reads the buffer (Set Features with data, Namespace Management, Firmware Image Download).</summary>
    ToDevice,
}

public sealed partial class NvmeController
{
    /// <summary>
    /// Most bytes one admin command moves through <see cref="ExecuteAdmin(NvmeCommand, Span{byte}, NvmeDataDirection)"/>:
    /// 64 KiB (also capped by <see cref="MaxTransferBytes"/>). Larger log pages are read in pieces with the log
    /// page offset (NVMe 1.4 §5.14.1, LPOL/LPOU), as nvme-cli does.
    /// </summary>
    public const int AdminDataBytes = 64 * 1024;

    /// <summary>The most bytes one admin data transfer may move on this controller.</summary>
    public int MaxAdminTransferBytes => Math.Min(AdminDataBytes, MaxTransferBytes);

    /// <summary>
    /// Runs an admin command that moves <paramref name="data"/> to or from the controller, through the driver's own
    /// DMA buffer (the caller's memory is never handed to the device): PRP1/PRP2 and, above two pages, a PRP list are
    /// filled in here (NVMe 1.4 §4.3), overwriting whatever the command had in those fields.
    /// </summary>
    /// <param name="command">The command; its CID and data pointers are set here.</param>
    /// <param name="data">What the controller reads (<see cref="NvmeDataDirection.ToDevice"/>) or where its data is copied to.</param>
    /// <param name="direction">The way the data moves.</param>
    /// <returns>DW0 of the completion.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The data is empty for a transfer, not for none, or larger than <see cref="MaxAdminTransferBytes"/>.</exception>
    /// <exception cref="NvmeCommandException">The command failed; the status is decoded in the message.</exception>
    public uint ExecuteAdmin(NvmeCommand command, Span<byte> data, NvmeDataDirection direction)
    {
        ValidateAdminData(data.Length, direction);
        lock (_adminLock)
        {
            ThrowIfUnusable();
            ThrowIfFaulted();
            return ExecuteAdminWithDataLocked(command, data, direction);
        }
    }

    private void ValidateAdminData(int length, NvmeDataDirection direction)
    {
        if (direction is not (NvmeDataDirection.None or NvmeDataDirection.FromDevice or NvmeDataDirection.ToDevice))
        {
            throw new ArgumentOutOfRangeException(nameof(direction), direction, "None, FromDevice or ToDevice");
        }
        if (direction == NvmeDataDirection.None)
        {
            if (length != 0) { throw new ArgumentOutOfRangeException(nameof(length), length, "a command without data takes an empty buffer"); }
            return;
        }
        if (length == 0 || length > MaxAdminTransferBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length,
                $"an admin data transfer on {_device.Address} moves 1 to {MaxAdminTransferBytes} bytes");
        }
        if ((length & 3) != 0)
        {
            // NUMD and every admin data structure count dwords (§5.14.1); a partial dword has no meaning.
            throw new ArgumentOutOfRangeException(nameof(length), length, "an admin data transfer is a whole number of dwords");
        }
    }

    /// <summary>As <see cref="ExecuteAdmin(NvmeCommand, Span{byte}, NvmeDataDirection)"/>, with the admin lock held and the length checked.</summary>
    internal unsafe uint ExecuteAdminWithDataLocked(NvmeCommand command, Span<byte> data, NvmeDataDirection direction)
    {
        if (direction == NvmeDataDirection.None)
        {
            command.Prp1 = default;
            command.Prp2 = default;
            return ExecuteAdminLocked(command);
        }
        ulong page = 1UL << PageShift;
        ulong dataBytes = Math.Max((ulong)AdminDataBytes, page);
        var buffer = _scratch.Span[..data.Length];
        if (direction == NvmeDataDirection.ToDevice) { data.CopyTo(buffer); } else { buffer.Clear(); }
        var map = new DmaBufferAddressMap(_scratch, 0);
        // SAFETY: the PRP list page is the last page of the admin buffer, owned by this controller and only used
        // under the admin lock; a DmaAddress is the 8-byte PRP entry itself, so the page is its entries.
        var list = new Span<DmaAddress>((byte*)_scratch.Pointer + (nint)dataBytes, (int)(page / 8));
        var prp = Prp.Build(ref map, (ulong)data.Length, PageShift, list, _scratch.GetDeviceAddress(dataBytes));
        command.Prp1 = prp.Prp1;
        command.Prp2 = prp.Prp2;
        uint dw0 = ExecuteAdminLocked(command, new DmaWindow(_scratch, 0, (ulong)data.Length), new DmaWindow(_scratch, dataBytes, page));
        if (direction == NvmeDataDirection.FromDevice) { buffer.CopyTo(data); }
        return dw0;
    }
}
