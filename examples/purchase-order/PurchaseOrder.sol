// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// Purchase orders shared only by the parties to each order.
///
/// A retailer creates an order for goods from a vendor and assigns one or
/// more distributors to it (when creating it, or later). An assigned distributor accepts the delivery
/// job (becoming the order's carrier) and marks it shipped; the retailer
/// confirms delivery. Only the retailer, the vendor and the assigned
/// distributors can read an order: every view reverts for anyone else.
///
/// On coco a transaction, its receipt and its logs are visible only to its
/// sender, its recipient and the addresses that appear as indexed topics of
/// its logs. So each event names, as indexed addresses, the parties that did
/// not send the transaction but must see it.
contract PurchaseOrder {
    enum Status {
        None,
        Created,
        Accepted,
        Shipped,
        Delivered
    }

    struct Order {
        address retailer;
        address vendor;
        address carrier; // the assigned distributor who accepted the job
        Status status;
        string item;
        uint256 quantity;
        uint256 unitPrice;
    }

    uint256 private lastId;
    mapping(uint256 => Order) private orders;
    mapping(uint256 => mapping(address => bool)) private assigned;

    event OrderCreated(uint256 indexed id, address indexed retailer, address indexed vendor);
    event DistributorAssigned(uint256 indexed id, address indexed distributor);
    event OrderAccepted(uint256 indexed id, address indexed retailer, address indexed vendor);
    event OrderShipped(uint256 indexed id, address indexed retailer, address indexed vendor);
    event OrderDelivered(uint256 indexed id, address indexed vendor, address indexed carrier);

    // Checked before anything else, so that an outsider learns nothing,
    // not even whether the order exists.
    modifier onlyParty(uint256 id) {
        Order storage o = orders[id];
        require(
            msg.sender == o.retailer || msg.sender == o.vendor || assigned[id][msg.sender],
            "PO: not a party to this order"
        );
        _;
    }

    /// Creates an order; `distributors` (possibly none) are assigned at once,
    /// so that they see this transaction too.
    function createOrder(
        address vendor,
        address[] calldata distributors,
        string calldata item,
        uint256 quantity,
        uint256 unitPrice
    ) external returns (uint256 id) {
        require(vendor != address(0), "PO: no vendor");
        require(quantity > 0, "PO: zero quantity");
        id = ++lastId;
        orders[id] = Order(msg.sender, vendor, address(0), Status.Created, item, quantity, unitPrice);
        emit OrderCreated(id, msg.sender, vendor);
        for (uint256 i = 0; i < distributors.length; i++) {
            _assign(id, distributors[i]);
        }
    }

    function assignDistributor(uint256 id, address distributor) external {
        Order storage o = orders[id];
        require(msg.sender == o.retailer, "PO: only the retailer assigns distributors");
        require(o.status == Status.Created, "PO: order already accepted");
        _assign(id, distributor);
    }

    function _assign(uint256 id, address distributor) private {
        require(distributor != address(0), "PO: no distributor");
        require(!assigned[id][distributor], "PO: distributor already assigned");
        assigned[id][distributor] = true;
        emit DistributorAssigned(id, distributor);
    }

    function acceptOrder(uint256 id) external {
        Order storage o = orders[id];
        require(assigned[id][msg.sender], "PO: not an assigned distributor");
        require(o.status == Status.Created, "PO: order not open");
        o.carrier = msg.sender;
        o.status = Status.Accepted;
        emit OrderAccepted(id, o.retailer, o.vendor);
    }

    function markShipped(uint256 id) external {
        Order storage o = orders[id];
        require(msg.sender == o.carrier && msg.sender != address(0), "PO: not the carrier");
        require(o.status == Status.Accepted, "PO: order not accepted");
        o.status = Status.Shipped;
        emit OrderShipped(id, o.retailer, o.vendor);
    }

    function confirmDelivery(uint256 id) external {
        Order storage o = orders[id];
        require(msg.sender == o.retailer, "PO: only the retailer confirms delivery");
        require(o.status == Status.Shipped, "PO: order not shipped");
        o.status = Status.Delivered;
        emit OrderDelivered(id, o.vendor, o.carrier);
    }

    function getOrder(uint256 id) external view onlyParty(id) returns (Order memory) {
        return orders[id];
    }

    function isAssigned(uint256 id, address distributor) external view onlyParty(id) returns (bool) {
        return assigned[id][distributor];
    }
}
