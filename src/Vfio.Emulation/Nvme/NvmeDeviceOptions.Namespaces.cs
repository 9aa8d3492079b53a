namespace Vfio.Emulation.Nvme;

public sealed partial record NvmeDeviceOptions
{
    /// <summary>
    /// NN: the highest namespace ID (1-4096; above 1024 the active list takes more than one Identify page). 1, the default, is one fixed namespace as before; above 1 the controller
    /// offers Namespace Management and Attachment (OACS bit 3) and NSIDs 2..NN start unallocated.
    /// </summary>
    public int MaxNamespaces { get; init; } = 1;

    /// <summary>
    /// TNVMCAP: the NVM capacity namespaces are carved from, in bytes (0, the default: exactly namespace 1's capacity, so
    /// nothing is left to create more). At most <see cref="MaxCapacityBytes"/>, which bounds the model's memory: storage is
    /// allocated when a namespace is created.
    /// </summary>
    public ulong TotalCapacityBytes { get; init; }

    /// <summary>The capacity in effect: <see cref="TotalCapacityBytes"/>, or namespace 1's when that is 0.</summary>
    public ulong EffectiveTotalCapacityBytes => TotalCapacityBytes != 0 ? TotalCapacityBytes : BlockCount * (ulong)BlockSize;

    private void ValidateNamespaces()
    {
        if (MaxNamespaces is < 1 or > 4096) { throw new ArgumentOutOfRangeException(nameof(MaxNamespaces), MaxNamespaces, "NN is 1-4096"); }
        ulong first = BlockCount * (ulong)BlockSize;
        if (TotalCapacityBytes != 0 && (TotalCapacityBytes < first || TotalCapacityBytes > MaxCapacityBytes))
        {
            throw new ArgumentOutOfRangeException(nameof(TotalCapacityBytes), TotalCapacityBytes,
                $"the total capacity holds namespace 1 ({first} bytes) and is at most {MaxCapacityBytes} bytes (0: namespace 1's)");
        }
    }
}
